package policy

import (
	"errors"
	"strings"

	"github.com/emersion/go-message/mail"

	// Registers the Japanese and other legacy charsets with go-message, so
	// that display names in ISO-2022-JP and Shift_JIS encoded-words decode
	// instead of failing the whole address list.
	_ "github.com/emersion/go-message/charset"
)

// Address is one address found in a header field.
type Address struct {
	// Name is the decoded display name; empty when none or when the field
	// was read by the lenient extractor.
	Name string
	// Addr is the addr-spec as it was found.
	Addr string
	// Domain is the normalized domain (see NormalizeDomain), or the
	// lower-cased raw domain when it does not normalize.
	Domain string
	// Internal is set by the decision once the domain has been classified.
	Internal bool
}

// key identifies a mailbox for de-duplication: "A@x, a@X" and the U-label
// and A-label forms of one IDN domain are one recipient.
// The local part is compared without quoting, since the strict parser
// returns `"a b"@x` as `a b@x` and the lenient extractor keeps the quotes.
func (a Address) key() string {
	local := a.Addr
	if i := strings.LastIndexByte(local, '@'); i >= 0 {
		local = local[:i]
		if local != "" && local[0] != '"' && a.Addr[i+1:] == a.Domain {
			// The usual case, without allocating when already lower case.
			return strings.ToLower(a.Addr)
		}
	}
	if len(local) >= 2 && local[0] == '"' && local[len(local)-1] == '"' {
		local = unquote(local[1 : len(local)-1])
	}
	return strings.ToLower(local) + "@" + a.Domain
}

// ParseMode says how a field's addresses were found.
type ParseMode int

const (
	// ParsedStrict means the RFC 5322 parser read the whole field.
	ParsedStrict ParseMode = iota
	// ParsedLenient means the strict parser failed and the addresses were
	// picked out by the lenient addr-spec extractor: counts are reliable,
	// display names and groups are not, so the field is never re-written
	// from them.
	ParsedLenient
	// ParseFailed means no address could be found in a field that is not
	// empty.
	ParseFailed
)

// FieldAddresses is the result of reading one header field.
type FieldAddresses struct {
	// Addrs are the addresses in order of appearance, duplicates kept.
	Addrs []Address
	// Mode says how they were found.
	Mode ParseMode
	// StrictErr is the strict parser's error when Mode is not ParsedStrict.
	StrictErr error
}

// ParseAddressField reads the addresses of one address-list header value
// (To, Cc, From) as a milter receives it: possibly folded, possibly with
// raw UTF-8 or RFC 2047 encoded-words.
//
// go-message's parser is all-or-nothing: one broken entry fails the whole
// list. A failure is therefore never read as "no addresses": the lenient
// extractor then picks out every addr-spec it can see, and only when it
// finds none in a non-empty field is the field reported as ParseFailed.
func ParseAddressField(value string) FieldAddresses {
	if addrs, ok := scanList(value); ok {
		return FieldAddresses{Addrs: addrs, Mode: ParsedStrict}
	}
	v := unfold(value)
	if strings.TrimSpace(v) == "" {
		return FieldAddresses{Mode: ParsedStrict}
	}
	list, err := mail.ParseAddressList(v)
	if err == nil {
		addrs := make([]Address, 0, len(list))
		for _, a := range list {
			addrs = append(addrs, Address{Name: a.Name, Addr: a.Address, Domain: addrDomain(a.Address)})
		}
		if embedded := embeddedAddresses(v, addrs); len(embedded) > 0 {
			return FieldAddresses{Addrs: append(addrs, embedded...), Mode: ParsedLenient, StrictErr: errEmbedded}
		}
		return FieldAddresses{Addrs: addrs, Mode: ParsedStrict}
	}
	addrs := LenientAddresses(v)
	if len(addrs) == 0 {
		if isEmptyGroups(v) {
			return FieldAddresses{Mode: ParsedStrict}
		}
		return FieldAddresses{Mode: ParseFailed, StrictErr: err}
	}
	return FieldAddresses{Addrs: addrs, Mode: ParsedLenient, StrictErr: err}
}

// errEmbedded marks a field that parsed, but shows more addresses than it
// holds.
var errEmbedded = errors.New("addresses visible inside display names, comments or quoted local parts")

// embeddedAddresses returns the addresses that are visible in v but are
// not among the parsed ones: inside a display name, a comment or a quoted
// local part. Recipients see them all the same. Postfix itself creates
// such fields: it rewrites an unparsable To such as
// `"Suzuki <a@x.example>, b@y.example` into one address with everything in
// a quoted local part, `"Suzuki <a@x.example>, b@y.example"@its.hostname`.
// Only addresses whose domain has a dot count, so that a quoted local part
// such as "a@b" is not taken for a second address.
func embeddedAddresses(v string, parsed []Address) []Address {
	if !strings.ContainsAny(v, "\"(") {
		// Without quotes or comments, every "@" belongs to a parsed address.
		return nil
	}
	var seen dedupe
	seen.hint = len(parsed)
	for _, a := range parsed {
		seen.add(a.key())
	}
	var extra []Address
	for _, a := range scanAddresses(v, false) {
		if strings.Contains(a.Domain, ".") && seen.add(a.key()) {
			extra = append(extra, a)
		}
	}
	return extra
}

// unquote removes the backslash of each quoted pair: `a\\b` is `a\b`.
func unquote(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unfold joins folded lines. The milter protocol passes header values with
// their line breaks (LF from Postfix, CRLF from files); removing the break
// keeps the whitespace that follows it, which is what RFC 5322 unfolding is.
// A bare CR or LF elsewhere is invalid anyway and removing it is harmless.
func unfold(v string) string {
	if !strings.ContainsAny(v, "\r\n") {
		return v
	}
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, v)
}

// isEmptyGroups reports whether v is made of empty groups only, such as
// "undisclosed-recipients:;", which some parsers reject.
func isEmptyGroups(v string) bool {
	for _, g := range strings.Split(v, ";") {
		g = strings.TrimSpace(strings.Trim(strings.TrimSpace(g), ","))
		if g == "" {
			continue
		}
		if !strings.HasSuffix(g, ":") || strings.Contains(g[:len(g)-1], ":") {
			return false
		}
	}
	return true
}

// addrDomain returns the normalized domain of an addr-spec. The domain is
// after the last "@": a quoted local part may hold one too.
func addrDomain(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return normalizedOrRaw(addr[i+1:])
}

// normalizedOrRaw is NormalizeDomain, or the lower-cased raw domain when
// it does not normalize (such a domain is external anyway).
func normalizedOrRaw(raw string) string {
	if d, err := NormalizeDomain(raw); err == nil {
		return d
	}
	return strings.ToLower(raw)
}

// LenientAddresses picks every addr-spec out of s without parsing the
// address-list grammar, in one pass from left to right: a quoted string
// directly followed by "@" is a quoted local part; any other "@" takes the
// longest run of local-part characters before it (dot-atoms) and the
// longest domain after it (labels or an address literal). It over-counts
// rather than under-counts: an address-like string inside a comment is
// counted too, which can only make bccguard hide more, never leak.
func LenientAddresses(s string) []Address {
	return scanAddresses(s, true)
}

// scanAddresses is LenientAddresses; with quoted false it ignores quoting
// and finds the addr-specs written inside quoted strings too.
func scanAddresses(s string, quoted bool) []Address {
	var out []Address
	add := func(addr string) {
		out = append(out, Address{Addr: addr, Domain: addrDomain(addr)})
	}
	floor := 0 // a local part never reaches back before this
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == '"' && quoted:
			j := closingQuote(s, i+1)
			if j < 0 {
				// Unterminated: the quote is just a character.
				i++
				floor = i
				continue
			}
			if j+1 < len(s) && s[j+1] == '@' {
				ds := skipWSP(s, j+2)
				if end := domainEnd(s, ds); end > ds {
					add(s[i:j+2] + s[ds:end])
					i, floor = end, end
					continue
				}
			}
			// A display name: an address-looking string inside it
			// ("bob@x" <bob@x>) is the same mailbox or a decoy; skip it.
			i = j + 1
			floor = i
		case c == '@':
			start := i
			for start > floor && atext[s[start-1]] {
				start--
			}
			for start < i && s[start] == '.' {
				start++
			}
			// net/mail allows blanks between "@" and the domain.
			ds := skipWSP(s, i+1)
			end := domainEnd(s, ds)
			if start < i && end > ds {
				add(s[start:i+1] + s[ds:end])
				i, floor = end, end
				continue
			}
			i++
		default:
			i++
		}
	}
	return out
}

func skipWSP(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// closingQuote returns the index of the quote that ends a quoted string
// whose content starts at from, honouring backslash escapes; -1 if none.
func closingQuote(s string, from int) int {
	for k := from; k < len(s); k++ {
		switch s[k] {
		case '\\':
			k++
		case '"':
			return k
		}
	}
	return -1
}

// domainEnd returns where the domain starting at s[from] ends.
func domainEnd(s string, from int) int {
	if from < len(s) && s[from] == '[' {
		if j := strings.IndexByte(s[from:], ']'); j > 0 {
			return from + j + 1
		}
		return from
	}
	// Any dot-atom, as net/mail accepts: a domain such as "a!b" is
	// nonsense, but it must be counted if the strict parser counts it.
	i := atextEnd(s, from)
	for i > from && s[i-1] == '.' {
		i--
	}
	return i
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
