package policy

import (
	"bytes"
	"encoding/base64"
	"strings"
	"unicode/utf8"
)

// scanList is the fast path of ParseAddressField: one pass over an
// address-list in its common shapes (addr-specs, display names of atoms,
// quoted strings and encoded-words, angle addresses, groups), allocating
// only the result. It returns ok=false, and leaves the field to the full
// parser, on anything less common: comments, quoted local parts, address
// literals, nested groups, a quoted display name holding an "@", an
// encoded-word that may decode to one (as the lenient reader delimits
// encoded-words, see hidingWords), an addr-spec that is not ASCII
// (IDN domains, and the Japanese separators that can run addresses
// together), invalid UTF-8, or any syntax error. When it returns ok, it found exactly the
// addr-specs net/mail finds (FuzzScanList checks that), except that
// net/mail fails on an encoded-word it cannot decode where the scanner,
// which does not decode names, does not; the addresses are the same.
//
// Display names are not decoded here: the count needs none, and the rare
// paths that write names back (move: external, replacement: sender) parse
// the field again in full.
func scanList(v string) ([]Address, bool) {
	if !utf8.ValidString(v) {
		return nil, false
	}
	if strings.IndexByte(v, 0xef) >= 0 && hasFullWidthAt(v) {
		// A full-width "@" anywhere: the lenient reader reads it as "@".
		return nil, false
	}
	if strings.Contains(v, "=?") && mayHideInWords(v) {
		// An encoded-word the lenient reader decodes may show an
		// address, wherever it is (a display name, a comment, across
		// specials: `=?UTF8?Q?<0@0?=>` is one word to it).
		return nil, false
	}
	p := scanner{s: v, out: make([]Address, 0, strings.Count(v, "@"))}
	for {
		p.skipWS()
		if p.eof() {
			return p.out, true
		}
		if p.s[p.i] == ',' {
			// Empty entries are allowed at the top level (obs-addr-list).
			p.i++
			continue
		}
		if !p.item() {
			return nil, false
		}
		p.skipWS()
		if !p.eof() && p.s[p.i] != ',' {
			return nil, false
		}
	}
}

// item reads a mailbox or a whole group.
func (p *scanner) item() bool {
	words, last, ok := p.phrase()
	if !ok || p.eof() {
		return false
	}
	if p.s[p.i] != ':' {
		return p.mailboxAfter(words, last)
	}
	if words == 0 {
		return false
	}
	p.i++
	p.skipWS()
	if !p.eof() && p.s[p.i] == ';' {
		p.i++
		return true
	}
	// Inside a group: no empty entries, no nested group, ";" at the end.
	for {
		words, last, ok := p.phrase()
		if !ok || p.eof() || !p.mailboxAfter(words, last) {
			return false
		}
		p.skipWS()
		if p.eof() {
			return false
		}
		switch p.s[p.i] {
		case ';':
			p.i++
			return true
		case ',':
			p.i++
			p.skipWS()
		default:
			return false
		}
	}
}

// mailboxAfter reads the rest of a mailbox after its phrase: "@domain" for
// a bare addr-spec whose local part was the single atom just read, or an
// angle address.
func (p *scanner) mailboxAfter(words int, last span) bool {
	if p.eof() {
		return false
	}
	var addr string
	var ok bool
	switch {
	case p.s[p.i] == '@' && words == 1 && last.end == p.i:
		end, upper, dotOK := dotAtomEnd(p.s, last.start)
		if end != last.end || !dotOK {
			return false
		}
		addr, ok = p.addrSpecFrom(last.start, upper)
	case p.s[p.i] == '<':
		p.i++
		start := p.i
		end, upper, dotOK := dotAtomEnd(p.s, p.i)
		p.i = end
		if !dotOK || p.eof() || p.s[p.i] != '@' {
			return false
		}
		addr, ok = p.addrSpecFrom(start, upper)
		if !ok || p.eof() || p.s[p.i] != '>' {
			return false
		}
		p.i++
	}
	if !ok {
		return false
	}
	// An ASCII dot-atom without capitals is already in normal form.
	domain := addr[p.at+1:]
	if p.domainUpper {
		domain = normalizedOrRaw(domain)
	}
	// Field by field rather than an append of a whole Address: while the
	// collector runs, copying a struct with pointers goes through a bulk
	// write barrier that costs more than reading the address. The result
	// was sized for every "@" of the field, so it does not grow here.
	n := len(p.out)
	if n < cap(p.out) {
		p.out = p.out[:n+1]
	} else {
		p.out = append(p.out, Address{})
	}
	a := &p.out[n]
	a.Addr, a.Domain, a.lower = addr, domain, p.lower
	return true
}

type scanner struct {
	s   string
	i   int
	out []Address
	// at is where the "@" of the last addr-spec read is, from its start.
	at int
	// lower says the last addr-spec read has no capital letter;
	// domainUpper says its domain has one.
	lower, domainUpper bool
}

type span struct{ start, end int }

func (p *scanner) eof() bool { return p.i >= len(p.s) }

func (p *scanner) skipWS() {
	// On locals: a loop on p.i would load and store it at every byte.
	s, i := p.s, p.i
	for i < len(s) && blank[s[i]] {
		i++
	}
	p.i = i
}

// blank holds the bytes skipWS skips: blanks and line breaks.
var blank = [256]bool{' ': true, '\t': true, '\r': true, '\n': true}

// phrase reads the words of a display name (atoms, which include
// encoded-words, and quoted strings) and the blanks after them. It reports
// how many words it read and where the last one was, if it was a single
// unquoted atom directly in front of the current position.
func (p *scanner) phrase() (words int, last span, ok bool) {
	for !p.eof() {
		c := p.s[p.i]
		switch {
		case c == '"':
			end := plainQuotedEnd(p.s, p.i+1)
			if end < 0 {
				// Unterminated, or an address, an escape or an
				// encoded-word that may hide one inside: the full
				// parser and the lenient reader decide.
				return 0, span{}, false
			}
			p.i = end + 1
			words++
			last = span{-1, -1}
		case atext[c]:
			start := p.i
			p.i = atextEnd(p.s, p.i)
			words++
			last = span{start, p.i}
		default:
			return words, last, true
		}
		if p.eof() || p.s[p.i] == '@' {
			return words, last, true
		}
		p.skipWS()
	}
	return words, last, true
}

// plainQuotedEnd returns the index of the quote that ends the quoted
// string whose content starts at from, in one pass, or -1 when it is not
// plain text: unterminated, or holding an "@" (the lenient reader must see
// it), an escape, a control character (net/mail rejects those), or an
// encoded-word that may decode to an "@".
func plainQuotedEnd(s string, from int) int {
	encoded := false
	for k := from; k < len(s); k++ {
		// Plain text is nearly all of it: a tight loop over it first.
		for k < len(s) && quotedClass[s[k]] == quotedPlain {
			k++
		}
		if k == len(s) {
			break
		}
		switch quotedClass[s[k]] {
		case quotedEnd:
			if encoded && mayHideAddress(s[from:k]) {
				return -1
			}
			return k
		case quotedBad:
			return -1
		case quotedEquals:
			encoded = encoded || k+1 < len(s) && s[k+1] == '?'
		}
	}
	return -1
}

const (
	quotedPlain = iota
	quotedEnd
	quotedBad
	quotedEquals
)

// quotedClass classifies the bytes inside a quoted string for
// plainQuotedEnd.
var quotedClass = func() (t [256]uint8) {
	for c := range t {
		switch {
		case c == '"':
			t[c] = quotedEnd
		case c == '=':
			t[c] = quotedEquals
		case c == '@' || c == '\\' || c == 0x7f || c < ' ' && c != '\t':
			t[c] = quotedBad
		}
	}
	return t
}()

// addrSpecFrom reads "@domain" at the current position, with the local part
// (a dot-atom, upper if it holds capitals) starting at start, and checks
// the domain the way net/mail does.
func (p *scanner) addrSpecFrom(start int, upper bool) (string, bool) {
	p.at = p.i - start
	p.i++ // '@'
	end, domainUpper, ok := dotAtomEnd(p.s, p.i)
	p.i = end
	if !ok {
		return "", false
	}
	p.lower, p.domainUpper = !upper && !domainUpper, domainUpper
	return p.s[start:p.i], true
}

// dotAtomEnd reads an ASCII dot-atom from i in one pass: it returns where
// the run of atext and dots ends, whether it holds capital letters, and
// whether it is a valid dot-atom (not empty, no leading, trailing or
// double dot).
func dotAtomEnd(s string, i int) (end int, upper, ok bool) {
	var seen uint8 // the classes of the atext read, for classUpper
	for {
		// One atom: a tight loop over atext, the dots between atoms
		// handled once each.
		start := i
		for i < len(s) {
			c := atomClass[s[i]]
			if c&classAtext == 0 {
				break
			}
			seen |= c
			i++
		}
		upper = seen&classUpper != 0
		if i == start {
			// Empty atom: nothing at all, a leading, trailing or double dot.
			return i, upper, false
		}
		if i == len(s) || s[i] != '.' {
			return i, upper, true
		}
		i++
	}
}

// The classes of atomClass are bits: every capital is atext too.
const (
	classAtext = 1 << iota // ASCII atext
	classUpper             // A to Z
)

// atomClass classifies the bytes of ASCII dot-atoms for dotAtomEnd; '.' and
// everything that is not ASCII atext are 0.
var atomClass = func() (t [256]uint8) {
	for c := range t {
		switch {
		case 'A' <= c && c <= 'Z':
			t[c] = classAtext | classUpper
		case c != '.' && c < 0x80 && isAtextByte(byte(c), false):
			t[c] = classAtext
		}
	}
	return t
}()

// atextEnd returns the end of the run of atext characters and dots that
// starts at i.
func atextEnd(s string, i int) int {
	for i < len(s) && atext[s[i]] {
		i++
	}
	return i
}

// mayHideAddress reports whether s holds an encoded-word that may decode to
// text with an "@" or a full-width one (a client shows the decoded text),
// as far as a look without converting the charset can tell: Q- or
// B-encoded bytes that hold one, or a charset in which ASCII is not
// itself.
func mayHideAddress(s string) bool {
	for {
		i := strings.Index(s, "=?")
		if i < 0 {
			return false
		}
		s = s[i+2:]
		cs, rest, ok1 := strings.Cut(s, "?")
		enc, rest, ok2 := strings.Cut(rest, "?")
		text, rest, ok3 := strings.Cut(rest, "?=")
		if !ok1 || !ok2 || !ok3 {
			return false
		}
		s = rest
		if !asciiCompatible(cs) {
			return true
		}
		if len(text) > 256 {
			return true
		}
		var buf [256]byte
		var n int
		switch enc {
		case "Q", "q":
			n = qDecode(buf[:], text)
		case "B", "b":
			var src [256]byte
			var err error
			n, err = base64.StdEncoding.Decode(buf[:], src[:copy(src[:], text)])
			if err != nil {
				continue
			}
		default:
			continue
		}
		if hasAt(cs, buf[:n]) {
			return true
		}
	}
}

// qDecode decodes Q-encoded text into buf (as long as text at most) and
// returns the length; invalid escapes are kept as they are.
func qDecode(buf []byte, text string) int {
	n := 0
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c == '_':
			c = ' '
		case c == '=' && i+2 < len(text) && unhex(text[i+1]) >= 0 && unhex(text[i+2]) >= 0:
			c = byte(unhex(text[i+1])<<4 | unhex(text[i+2]))
			i += 2
		}
		buf[n] = c
		n++
	}
	return n
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// hasAt reports whether text in charset cs holds the character "@" or a
// full-width one (＠, ﹫): a byte 0x40 that is not part of a two-byte
// Japanese character (in ISO-2022-JP's two-byte runs, and as the second
// byte of Shift_JIS characters, it is not "@"), or the encoding of ＠ in
// that charset. Names in these charsets are the common case in Japanese
// mail and stay on the fast path.
func hasAt(cs string, text []byte) bool {
	// Compared without lower-casing: ToLower would allocate for every
	// upper-case charset name, the usual spelling.
	switch cs = withoutLanguage(cs); {
	case strings.EqualFold(cs, "iso-2022-jp"):
		// As the decoder (golang.org/x/text's ISO2022JP) reads it: only
		// a known escape sequence switches between one and two bytes; an
		// ESC before anything else is one replaced byte, and what follows
		// is read in the current mode (`ESC @ext.example` shows
		// "\ufffd@ext.example"), as is what follows an 8-bit byte. A line
		// feed ends two-byte mode.
		twoByte := false
		for i := 0; i < len(text); i++ {
			switch {
			case text[i] == 0x1b:
				switch esc := text[i+1 : min(i+3, len(text))]; string(esc) {
				case "$@", "$B":
					twoByte = true
					i += 2
				case "$(":
					if i+3 < len(text) && text[i+3] == 'D' {
						twoByte = true
						i += 3
					}
				case "(B", "(J", "(I":
					// JIS X 0201 katakana (ESC ( I) has no '@': reading it
					// as ASCII can only over-count.
					twoByte = false
					i += 2
				}
			case text[i] >= 0x80:
				// Not ISO-2022-JP: one replaced byte in any mode.
			case twoByte && text[i] == '\n':
				twoByte = false
			case twoByte:
				if text[i] == '!' && i+1 < len(text) && text[i+1] == 'w' {
					return true // ＠ is 0x21 0x77
				}
				i++
			case text[i] == '@':
				return true
			}
		}
		return false
	case strings.EqualFold(cs, "shift_jis") || strings.EqualFold(cs, "cp932") || strings.EqualFold(cs, "windows-31j"):
		for i := 0; i < len(text); i++ {
			switch c := text[i]; {
			case 0x81 <= c && c <= 0x9f || 0xe0 <= c && c <= 0xfc:
				if c == 0x81 && i+1 < len(text) && text[i+1] == 0x97 {
					return true // ＠
				}
				i++ // the second byte may be 0x40
			case c == '@':
				return true
			}
		}
		return false
	case strings.EqualFold(cs, "euc-jp"):
		return bytes.IndexByte(text, '@') >= 0 || bytes.Contains(text, []byte("\xa1\xf7"))
	}
	return bytes.IndexByte(text, '@') >= 0 || hasFullWidthAtBytes(text)
}

// hasFullWidthAt reports whether UTF-8 text holds ＠ (U+FF20) or ﹫
// (U+FE6B).
func hasFullWidthAt(text string) bool {
	return strings.Contains(text, "\uff20") || strings.Contains(text, "\ufe6b")
}

// hasFullWidthAtBytes is hasFullWidthAt for bytes.
func hasFullWidthAtBytes(text []byte) bool {
	return bytes.Contains(text, []byte("\uff20")) || bytes.Contains(text, []byte("\ufe6b"))
}

// asciiCompatible reports whether ASCII bytes mean ASCII in a charset that
// Japanese and Western mail uses (ISO-2022-JP only outside its two-byte
// runs, where a byte 0x40 makes mayHideAddress say yes, to be safe).
func asciiCompatible(cs string) bool {
	cs = withoutLanguage(cs)
	for _, name := range [...]string{"utf-8", "iso-2022-jp", "shift_jis", "us-ascii", "euc-jp", "cp932", "windows-31j"} {
		if strings.EqualFold(cs, name) {
			return true
		}
	}
	return false
}

// atext holds isAtextByte(c, true) for every byte, for the hot loops.
var atext = func() (t [256]bool) {
	for c := range t {
		t[c] = isAtextByte(byte(c), true)
	}
	return t
}()

// isAtextByte is net/mail's isAtext for one byte; bytes of multi-byte UTF-8
// sequences are atext (the whole value was checked to be valid UTF-8).
func isAtextByte(c byte, dot bool) bool {
	switch c {
	case '.':
		return dot
	case '(', ')', '<', '>', '[', ']', ':', ';', '@', '\\', ',', '"':
		return false
	}
	return '!' <= c && c <= '~' || c >= 0x80
}
