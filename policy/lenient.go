package policy

import (
	"mime"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
)

// This file reads a field as a person reads it: every address that a
// mail client can show, whatever the syntax around it. It is the fallback
// of ParseAddressField and its check on fields the strict parser accepts,
// so both paths agree on what is an address. Everything here is one pass
// (or a few) over the value: no scan ever goes back over text an earlier
// scan of the same kind already covered, so the time is linear in the
// length of the field whatever it holds.

// LenientAddresses picks every addr-spec a reader can see out of s, an
// unfolded field value, without parsing the address-list grammar: inside
// display names, comments and quoted strings too, with the whitespace and
// comments that obsolete syntax allows around "@" and dots, separated by
// Japanese separators as well as commas, and inside RFC 2047
// encoded-words once decoded. It over-counts rather than under-counts:
// that can only make bccguard hide more, never leak.
func LenientAddresses(s string) []Address {
	out := findAddrSpecs(s, nil)
	if strings.Contains(s, "=?") {
		if dec := decodedWords(s); dec != "" {
			out = findAddrSpecs(dec, out)
		}
	}
	return out
}

// visibleAddresses is LenientAddresses plus the bare names (see
// appendBare).
func visibleAddresses(s string) []Address {
	return appendBare(s, LenientAddresses(s))
}

// findAddrSpecs appends the addr-specs of s to out, in order.
func findAddrSpecs(s string, out []Address) []Address {
	q := quoteState{valid: utf8.ValidString(s)}
	floor := 0 // a local part never reaches back before this
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == 0x1b {
			// Raw ISO-2022-JP: its two-byte characters are made of ASCII
			// bytes, '"' and '@' among them, that are not those
			// characters.
			i = jisEnd(s, i) - 1
			floor = i + 1
			continue
		}
		if n := q.step(s, i); n > 0 {
			i += n - 1
			continue
		}
		if c != '@' {
			continue
		}
		local, lstart := localPartBefore(s, i, floor, &q)
		domain, end := domainAfter(s, i)
		if local == "" || domain == "" {
			floor = i + 1
			continue
		}
		// Inside a quoted string, "a@b" of a quoted local part `"a@b"@x`
		// is not an address; one with a domain that has a dot is shown as
		// one, and counts.
		if lstart >= 0 && (!q.in || strings.Contains(domain, ".")) {
			addr := s[lstart:end]
			if len(addr) != len(local)+1+len(domain) {
				// Blanks, comments or stray dots were left out.
				addr = local + "@" + domain
			}
			out = append(out, Address{Addr: addr, Domain: normalizedOrRaw(domain)})
		}
		floor, i = end, end-1
	}
	return out
}

// quoteState follows quoted strings from left to right.
type quoteState struct {
	valid bool // the value is valid UTF-8
	in    bool
	// open and closed are where the last quoted string opened, and where
	// it closed (-1 while open).
	open, closed int
}

// step advances over s[i]. It returns 0 when s[i] is not quoting, 1 for
// a quote, and 2 for a quoted pair (the caller skips the second byte).
func (q *quoteState) step(s string, i int) int {
	switch s[i] {
	case '"':
		q.in = !q.in
		if q.in {
			q.open, q.closed = i, -1
		} else {
			q.closed = i
		}
		return 1
	case '\\':
		// A backslash in a quoted string escapes the next byte, but not
		// in a value that is not UTF-8 when it is the second byte of a
		// Shift_JIS character (as in 表, 0x95 0x5C), which a Japanese
		// client shows as that character, closing quote after it.
		if q.in && i+1 < len(s) && !(i > 0 && !q.valid && sjisLead(s[i-1])) {
			return 2
		}
	}
	return 0
}

func sjisLead(c byte) bool { return 0x81 <= c && c <= 0x9f || 0xe0 <= c && c <= 0xfc }

// jisEnd returns where the ISO-2022-JP text that starts with an escape at
// s[i] ends: after ESC ( B or ESC ( J (back to ASCII); for ESC $ @,
// ESC $ B or ESC $ ( D, at the next escape or at the first byte that no
// two-byte character holds (a blank, a line break, 8-bit: Postfix folds
// such text); after the ESC alone otherwise.
func jisEnd(s string, i int) int {
	switch {
	case strings.HasPrefix(s[i:], "\x1b(B"), strings.HasPrefix(s[i:], "\x1b(J"):
		return i + 3
	case strings.HasPrefix(s[i:], "\x1b$@"), strings.HasPrefix(s[i:], "\x1b$B"):
		i += 3
	case strings.HasPrefix(s[i:], "\x1b$(D"):
		i += 4
	default:
		return i + 1
	}
	for i < len(s) && s[i] > ' ' && s[i] < 0x7f {
		i++
	}
	return i
}

// sepLen returns the length of the Japanese separator at s[i] (ideographic
// comma 、, ideographic space, full-width comma ，), or 0. People read
// addresses separated by them as separate addresses.
func sepLen(s string, i int) int {
	if i+3 <= len(s) {
		switch s[i : i+3] {
		case "\u3001", "\u3000", "\uff0c":
			return 3
		}
	}
	return 0
}

// atomEnd returns the end of the run of atext characters and dots from i,
// stopping at a Japanese separator.
func atomEnd(s string, i int) int {
	for i < len(s) && atext[s[i]] {
		if s[i] >= 0x80 && sepLen(s, i) > 0 {
			break
		}
		i++
	}
	return i
}

// atomStart returns the start of the run of atext characters and dots
// that ends at j, not before floor, stopping at a Japanese separator.
func atomStart(s string, j, floor int) int {
	for j > floor && atext[s[j-1]] {
		if s[j-1] >= 0x80 && j-3 >= floor && sepLen(s, j-3) > 0 {
			break
		}
		j--
	}
	return j
}

// skipCFWS skips blanks and simple comments (without nested parentheses
// or escapes) forwards from i. A comment is only entered from its opening
// parenthesis, so each is scanned once per pass.
func skipCFWS(s string, i int) int {
	for i < len(s) {
		switch s[i] {
		case ' ', '\t':
			i++
		case '(':
			j := strings.IndexAny(s[i+1:], "()\\")
			if j < 0 || s[i+1+j] != ')' {
				return i
			}
			i += j + 2
		default:
			return i
		}
	}
	return i
}

// skipCFWSBack is skipCFWS backwards from j, not before floor.
func skipCFWSBack(s string, j, floor int) int {
	for j > floor {
		switch s[j-1] {
		case ' ', '\t':
			j--
		case ')':
			k := strings.LastIndexAny(s[floor:j-1], "()\\")
			if k < 0 || s[floor+k] != '(' {
				return j
			}
			j = floor + k
		default:
			return j
		}
	}
	return j
}

// localPartBefore reads the local part that ends at the "@" at s[at]: a
// quoted string, or dot-atoms, with blanks and comments allowed around the
// dots and before the "@" (obs-local-part). It returns the local part
// without them, and where it starts (-1 for none).
func localPartBefore(s string, at, floor int, q *quoteState) (string, int) {
	j := skipCFWSBack(s, at, floor)
	if j > floor && s[j-1] == '"' && !q.in && q.closed == j-1 {
		return s[q.open:j], q.open
	}
	if j > 0 && s[j-1] >= 0x80 {
		// The byte before "@" must end a character: in Shift_JIS text
		// "@" is also the second byte of characters (0x81 0x40 is the
		// ideographic space).
		if r, n := utf8.DecodeLastRuneInString(s[:j]); r == utf8.RuneError && n <= 1 {
			return "", -1
		}
	}
	var words dotted
	start := -1
	for {
		k := atomStart(s, j, floor)
		word := strings.Trim(s[k:j], ".")
		if word == "" {
			break
		}
		words.add(word)
		start = k
		// obs-local-part: "john . smith" is john.smith.
		if s[k] != '.' {
			m := skipCFWSBack(s, k, floor)
			if m <= floor || s[m-1] != '.' {
				break
			}
			k = m - 1
		}
		j = skipCFWSBack(s, k, floor)
	}
	return words.join(true), start
}

// dotted collects the words of a dot-atom that blanks or comments split
// (obsolete syntax), without allocating for the usual single word.
type dotted struct {
	first string
	more  []string
}

func (d *dotted) add(w string) {
	if d.first == "" {
		d.first = w
	} else {
		d.more = append(d.more, w)
	}
}

// join returns the words joined by dots; reversed when they were
// collected from right to left.
func (d *dotted) join(reversed bool) string {
	if d.more == nil {
		return d.first
	}
	words := append([]string{d.first}, d.more...)
	if reversed {
		slices.Reverse(words)
	}
	return strings.Join(words, ".")
}

// domainAfter reads the domain after the "@" at s[at]: an address literal,
// or labels, with blanks and comments allowed around "@" and the dots
// (obs-domain): a client shows `a@city.example.jp .evil.example.com` as
// one address in evil.example.com. It returns the domain without them and
// where it ends.
func domainAfter(s string, at int) (string, int) {
	k := skipCFWS(s, at+1)
	if k < len(s) && s[k] == '[' {
		j := strings.IndexAny(s[k+1:], "[]\\@")
		if j < 0 || s[k+1+j] != ']' {
			return "", k
		}
		return s[k : k+j+2], k + j + 2
	}
	if k < len(s) && s[k] >= 0x80 {
		if r, _ := utf8.DecodeRuneInString(s[k:]); r == utf8.RuneError {
			return "", k
		}
	}
	var labels dotted
	end := k
	for {
		j := atomEnd(s, k)
		word := strings.Trim(s[k:j], ".")
		if word == "" {
			break
		}
		labels.add(word)
		end = j
		// The next label, if a dot joins it with blanks or comments on
		// either side; but not the local part of the next address.
		m := skipCFWS(s, j)
		if s[j-1] != '.' {
			if m >= len(s) || s[m] != '.' {
				break
			}
			m = skipCFWS(s, m+1)
		} else if m == j {
			break
		}
		n := atomEnd(s, m)
		if strings.Trim(s[m:n], ".") == "" {
			break
		}
		if p := skipCFWS(s, n); p < len(s) && s[p] == '@' {
			break
		}
		k = m
	}
	return labels.join(false), end
}

// appendBare appends to out the bare names of s: list entries that hold a
// word but no "@" at all, such as `alice` in `alice, bob@x.example`.
// Postfix qualifies them with $myorigin, and recipients see them either
// way: each is an address of the organization's own domain. Their Domain
// is empty, which marks them. A group's name is not an entry.
func appendBare(s string, out []Address) []Address {
	q := quoteState{valid: utf8.ValidString(s)}
	start, word, at, depth, angle := 0, false, false, 0, false
	end := func(i int) {
		if word && !at {
			if name := strings.Join(strings.Fields(s[start:i]), " "); name != "" {
				out = append(out, Address{Addr: name})
			}
		}
		start, word, at, angle = i+1, false, false, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == 0x1b {
			i = jisEnd(s, i) - 1
			word = true
			continue
		}
		if depth == 0 {
			if n := q.step(s, i); n > 0 {
				i += n - 1
				word = true
				continue
			}
		}
		switch {
		case c == '@':
			at = true
		case q.in:
			word = true
		case c == '(':
			depth++
		case c == ')':
			if depth > 0 {
				depth--
			}
		case depth > 0:
		case c == '<':
			angle = true
		case c == '>':
			angle = false
		case (c == ',' || c == ';') && !angle:
			end(i)
		case c == ':' && !angle:
			// What came before was a group's name.
			start, word, at = i+1, false, false
		case c != ' ' && c != '\t' && c != '\r' && c != '\n':
			word = true
		}
	}
	end(len(s))
	return out
}

// wordDecoder decodes RFC 2047 encoded-words in the charsets go-message
// knows (UTF-8, ISO-2022-JP, Shift_JIS, EUC-JP, ...).
var wordDecoder = mime.WordDecoder{CharsetReader: charset.Reader}

// decodedWords returns the decoded text of the encoded-words in s, each
// followed by a space; words that do not decode are left out (the raw
// text was scanned already).
func decodedWords(s string) string {
	var b strings.Builder
	for i := 0; ; {
		j := strings.Index(s[i:], "=?")
		if j < 0 {
			return b.String()
		}
		start := i + j
		end, stop := encodedWordEnd(s, start)
		if end < 0 {
			// No encoded-word starts between start and stop either.
			i = max(stop, start+2)
			continue
		}
		if dec, err := wordDecoder.Decode(s[start:end]); err == nil {
			b.WriteString(dec)
			b.WriteByte(' ')
		}
		i = end
	}
}

// encodedWordEnd returns the end of the encoded-word `=?charset?e?text?=`
// at s[start], or -1 and where the scan stopped: at a blank, which no
// encoded-word holds.
func encodedWordEnd(s string, start int) (end, stop int) {
	i := start + 2
	for part := 0; part < 2; part++ {
		for i < len(s) && s[i] != '?' {
			if s[i] <= ' ' {
				return -1, i
			}
			i++
		}
		i++ // '?'
	}
	for i+1 < len(s) {
		switch {
		case s[i] <= ' ':
			return -1, i
		case s[i] == '?' && s[i+1] == '=':
			return i + 2, i + 2
		}
		i++
	}
	return -1, len(s)
}
