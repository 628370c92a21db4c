package policy

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/idna"
)

// NormalizeDomain returns the form of a domain used for every comparison:
// the IDNA (UTS #46) mapping of the domain in ASCII (IDN U-labels converted
// to xn-- A-labels), without a trailing root dot. Address literals such as
// "[192.0.2.1]" are kept as they are, lower-cased.
//
// UTS #46 rather than Unicode lower-casing: a look-alike such as
// "cİty.example.jp" (capital I with a dot) is not "city.example.jp" in DNS,
// although strings.ToLower makes it so; full-width letters and the
// ideographic full stop map to what a resolver would look up.
func NormalizeDomain(d string) (string, error) {
	d = strings.TrimSuffix(strings.TrimSpace(d), ".")
	if d == "" {
		return "", errors.New("empty domain")
	}
	if d[0] == '[' {
		return asciiLower(d), nil
	}
	if isASCIILower(d) {
		return d, nil
	}
	a, err := uts46.ToASCII(d)
	if err != nil {
		return "", fmt.Errorf("domain %q: %w", d, err)
	}
	return strings.TrimSuffix(a, "."), nil
}

// uts46 maps domains for lookup as resolvers do (non-transitional), but
// accepts underscores and the hyphen placements some internal names use:
// bccguard compares domains, it does not register them.
var uts46 = idna.New(idna.MapForLookup(), idna.Transitional(false), idna.StrictDomainName(false), idna.ValidateLabels(false))

// asciiLower lower-cases the ASCII letters of s only: Unicode lower-casing
// turns some non-ASCII letters into ASCII ones (the Kelvin sign into "k",
// the dotted capital I into "i"), and a domain that does not normalize
// must never come to equal a configured one that way.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// isASCIILower reports whether s is already in normalized form, so the
// common case costs no allocation.
func isASCIILower(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 || ('A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// DomainPattern is one entry of internal_domains or domains, with the
// matching rule of Postfix tables: "example.jp" matches that domain only,
// ".example.jp" matches any subdomain of it but not the domain itself.
type DomainPattern struct {
	// Domain is the normalized domain, without the leading dot.
	Domain string
	// Subdomains is true for a pattern written with a leading dot.
	Subdomains bool
}

// ParseDomainPattern parses one configured domain pattern.
func ParseDomainPattern(s string) (DomainPattern, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "*.") {
		return DomainPattern{}, fmt.Errorf("%q: write subdomains with a leading dot, as in Postfix tables: %q", s, s[1:])
	}
	sub := strings.HasPrefix(s, ".")
	d, err := NormalizeDomain(strings.TrimPrefix(s, "."))
	if err != nil {
		return DomainPattern{}, err
	}
	if err := checkHostname(d); err != nil {
		return DomainPattern{}, fmt.Errorf("%q: %w", s, err)
	}
	return DomainPattern{Domain: d, Subdomains: sub}, nil
}

// checkHostname accepts a normalized domain name: labels of letters,
// digits and hyphens (underscores too, which some internal names use), 1 to
// 63 characters, not starting or ending with a hyphen. A pattern that
// cannot match any real domain must not pass silently: in domains it would
// turn the check off for the senders the admin meant.
func checkHostname(d string) error {
	if len(d) > 253 {
		return fmt.Errorf("longer than 253 characters")
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" {
			return fmt.Errorf("empty label")
		}
		if len(label) > 63 {
			return fmt.Errorf("label %q longer than 63 characters", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with a hyphen", label)
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlnum(c) && c != '-' && c != '_' {
				return fmt.Errorf("%q is not allowed in a domain name", c)
			}
		}
	}
	return nil
}

// String returns the pattern as it is written in the config.
func (p DomainPattern) String() string {
	if p.Subdomains {
		return "." + p.Domain
	}
	return p.Domain
}

// Match reports whether the normalized domain d matches p.
func (p DomainPattern) Match(d string) bool {
	if !p.Subdomains {
		return d == p.Domain
	}
	return len(d) > len(p.Domain)+1 && d[len(d)-len(p.Domain)-1] == '.' && strings.HasSuffix(d, p.Domain)
}

// specificity orders matching patterns: a longer domain is more specific,
// and an exact pattern beats a subdomain pattern of the same domain.
func (p DomainPattern) specificity() int {
	s := 2 * len(p.Domain)
	if !p.Subdomains {
		s++
	}
	return s
}

// DomainSet is a list of patterns; a domain belongs to it when any pattern
// matches. Parent suffixes never match by accident: ".lg.jp" would have to
// be configured explicitly for other municipalities to count as internal.
type DomainSet []DomainPattern

// Contains reports whether the normalized domain d matches any pattern.
func (s DomainSet) Contains(d string) bool {
	for _, p := range s {
		if p.Match(d) {
			return true
		}
	}
	return false
}
