package policy

import (
	"errors"
	"io"
	"mime"
	netmail "net/mail"
	"strings"

	// Registers the Japanese and other legacy charsets with go-message, so
	// that display names in ISO-2022-JP and Shift_JIS encoded-words decode
	// instead of failing the whole address list.
	_ "github.com/emersion/go-message/charset"
)

// Address is one address found in a header field.
type Address struct {
	// Addr is the addr-spec as it was found.
	Addr string
	// Domain is the normalized domain (see NormalizeDomain), or the
	// raw domain with ASCII lower-cased when it does not normalize; empty
	// for a bare name without a domain (counted as internal: Postfix
	// qualifies it with $myorigin).
	Domain string
	// Internal is set by the decision once the domain has been classified.
	Internal bool
	// lower is set by the fast scanner when Addr is ASCII without capitals
	// and the domain is Domain as written: Addr is then its own key.
	lower bool
}

// key identifies a mailbox for de-duplication: "A@x, a@X" and the U-label
// and A-label forms of one IDN domain are one recipient.
// The local part is compared without quoting, since the strict parser
// returns `"a b"@x` as `a b@x` and the lenient extractor keeps the quotes.
func (a *Address) key() string {
	if a.lower {
		return a.Addr
	}
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
// (To, Cc, Resent-To, From) as a milter receives it: possibly folded,
// possibly with raw UTF-8, other 8-bit text or RFC 2047 encoded-words.
//
// What counts is what a recipient's mail client shows. go-message's
// parser is all-or-nothing: one broken entry fails the whole list, and it
// does not see addresses inside display names, comments or encoded-words,
// nor those written in obsolete syntax. So the field is also read the way
// a person reads it (see LenientAddresses and appendBare): when that finds
// addresses the strict parser did not, or the strict parser fails, the
// field counts as read leniently, with every address either found. Only
// when no address at all can be found in a non-empty field is it reported
// as ParseFailed.
func ParseAddressField(value string) FieldAddresses {
	if addrs, ok := scanList(value); ok {
		return FieldAddresses{Addrs: addrs, Mode: ParsedStrict}
	}
	v := unfold(value)
	if strings.TrimSpace(v) == "" {
		return FieldAddresses{Mode: ParsedStrict}
	}
	seen := visibleAddresses(v)
	list, err := countingParser.ParseList(v)
	if err == nil {
		addrs := make([]Address, 0, len(list))
		for _, a := range list {
			addrs = append(addrs, Address{Addr: a.Address, Domain: addrDomain(a.Address)})
		}
		if extra := notIn(seen, addrs); len(extra) > 0 {
			return FieldAddresses{Addrs: append(addrs, extra...), Mode: ParsedLenient, StrictErr: errEmbedded}
		}
		return FieldAddresses{Addrs: addrs, Mode: ParsedStrict}
	}
	if len(seen) == 0 {
		if isEmptyGroups(v) {
			return FieldAddresses{Mode: ParsedStrict}
		}
		return FieldAddresses{Mode: ParseFailed, StrictErr: err}
	}
	return FieldAddresses{Addrs: seen, Mode: ParsedLenient, StrictErr: err}
}

// countingParser is net/mail's parser as go-message sets it up, except
// that it does not convert the charsets of encoded-words: counting needs
// no display name, converting costs far more than parsing (ISO-2022-JP
// most), and the lenient reader has decoded the words that may hide an
// address already. The rare paths that write names back parse again with
// go-message.
var countingParser = netmail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil },
}}

// errEmbedded marks a field that parsed, but shows more addresses than it
// holds.
var errEmbedded = errors.New("addresses visible outside the parsed ones (display names, comments, encoded-words, obsolete syntax)")

// notIn returns the addresses of seen whose key is not among parsed.
// Postfix itself creates fields that need this: it rewrites an unparsable
// To such as `"Suzuki <a@x.example>, b@y.example` into one address with
// everything in a quoted local part,
// `"Suzuki <a@x.example>, b@y.example"@its.hostname`.
func notIn(seen, parsed []Address) []Address {
	if len(seen) == 0 {
		return nil
	}
	var d dedupe
	d.hint = len(parsed) + len(seen)
	for i := range parsed {
		d.add(parsed[i].key())
	}
	var extra []Address
	for _, a := range seen {
		if d.add((&a).key()) {
			extra = append(extra, a)
		}
	}
	d.release()
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
// their line breaks (LF from Postfix, CRLF from files); removing a break
// followed by a blank keeps the blank, which is RFC 5322 unfolding.
//
// A bare CR or LF (one not followed by a blank) is invalid. Some clients
// end the line there, others show it as nothing; bccguard reads it as a
// blank, so that the words on either side stay apart and everything after
// it still belongs to this field: every address any client could show is
// counted, and a conversion replaces the whole value.
func unfold(v string) string {
	if !strings.ContainsAny(v, "\r\n") {
		return v
	}
	b := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c != '\r' && c != '\n' {
			b = append(b, c)
			continue
		}
		j := i
		for j < len(v) && (v[j] == '\r' || v[j] == '\n') {
			j++
		}
		if j == len(v) || v[j] != ' ' && v[j] != '\t' || j-i > 2 || j-i == 2 && v[i:j] != "\r\n" {
			b = append(b, ' ')
		}
		i = j - 1
	}
	return string(b)
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
	return asciiLower(raw)
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
