package policy

import (
	"slices"
	"strings"
	"unicode/utf8"
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
	s = fullWidthAts(s)
	out := findAddrSpecs(s, nil, false)
	if strings.Contains(s, "=?") {
		if dec := decodedWords(s); dec != "" {
			// Decoded words are display names or comments.
			out = findAddrSpecs(fullWidthAts(dec), out, true)
		}
	}
	return out
}

// visibleAddresses is LenientAddresses plus the bare names (see
// appendBare).
func visibleAddresses(s string) []Address {
	return appendBare(fullWidthAts(s), LenientAddresses(s))
}

// findAddrSpecs appends the addr-specs of s to out, in order. With names
// set, s is display-name or comment text (decoded encoded-words).
//
// Every "@" outside a quoted local part whose local part and domain are
// not empty yields an address; when the domain of the address before took
// the whole local part (nothing a reader would see as a break between
// them), its last label is read as this local part as well: over-counting
// is harmless, under-counting leaks.
func findAddrSpecs(s string, out []Address, names bool) []Address {
	q := quoteState{valid: utf8.ValidString(s)}
	floor := 0 // a local part never reaches back before this
	prevEnd, prevLabel := -1, -1
	depth := 0 // comment nesting outside quoted strings
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
		switch {
		case q.in:
		case c == '(':
			depth++
			continue
		case c == ')':
			depth = max(depth-1, 0)
			continue
		}
		if c != '@' {
			continue
		}
		local, lstart := localPartBefore(s, i, floor, &q)
		if local == "" && prevEnd >= 0 && floor == prevEnd && skipCFWSBack(s, i, floor) == floor {
			// The domain before ran into this address.
			local, lstart = s[prevLabel:prevEnd], prevLabel
		}
		d := domainAfter(s, i, false)
		if local == "" || d.domain == "" {
			floor = i + 1
			continue
		}
		// In a display name or a comment, an address is what a reader
		// takes for one: without the quotes, brackets or words written
		// around it (`"'a@ext.example'" <a@ext.example>` shows one
		// address), so that it is the same as the real one.
		inName := names || q.in || depth > 0 || followedByAngle(s, d.end)
		if inName {
			local = nameLocalPart(local)
			if nd := domainAfter(s, i, true); nd.domain != "" {
				d.domain, d.alt = nd.domain, nd.alt
			}
			if local == "" {
				floor = i + 1
				continue
			}
		}
		// Inside a quoted string, "a@b" of a quoted local part `"a@b"@x`
		// is not an address; one with a domain that has a dot is shown as
		// one, and counts.
		if lstart >= 0 && (!q.in || strings.ContainsAny(d.domain, ".\u3002\uff0e\uff61")) {
			domain := normalizedOrRaw(d.domain)
			var addr string
			switch {
			case d.alt != "":
				// Obsolete syntax joined labels across blanks, folds or
				// comments: `b@ext.example .city.example.jp`. Domain is
				// the joined reading, Addr the first run alone, and the
				// address is internal only when both are (see
				// Config.internal).
				addr = local + "@" + d.alt
			case !inName && len(s[lstart:d.end]) == len(local)+1+len(d.domain):
				addr = s[lstart:d.end]
			default:
				// Blanks, comments, stray dots or text around were left
				// out.
				addr = local + "@" + d.domain
			}
			out = append(out, Address{Addr: addr, Domain: domain})
		}
		floor, i = d.end, d.end-1
		prevEnd, prevLabel = d.end, d.lastLabel
	}
	return out
}

// followedByAngle reports whether an angle address follows s[i:], after
// blanks and comments: what came before was a display name.
func followedByAngle(s string, i int) bool {
	i = skipCFWS(s, i)
	return i < len(s) && s[i] == '<'
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
	if j == at && sjisSecondByte(s, at, floor) {
		// In Shift_JIS text "@" is also the second byte of characters
		// (0x81 0x40 is the ideographic space).
		return "", -1
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

// sjisSecondByte reports whether the "@" at s[at] is the second byte of a
// Shift_JIS character: the bytes of at least 0x80 before it, paired from
// the left as Shift_JIS pairs them, leave a lead byte 0x81 to 0x9F just
// before it. Only that range: 0xE0 to 0xFC are also the accented letters
// of Latin-1 (`José@`), and the ambiguous reading must count the address
// (over-count, never under-count); in Shift_JIS the characters 0x81 0x40
// (ideographic space) to 0x9F 0x40 are those that names hold.
func sjisSecondByte(s string, at, floor int) bool {
	if at == 0 || s[at-1] < 0x81 || s[at-1] > 0x9f {
		return false
	}
	if r, n := utf8.DecodeLastRuneInString(s[:at]); r != utf8.RuneError || n > 1 {
		return false // UTF-8 text
	}
	k := at - 1
	for k > floor && s[k-1] >= 0x80 {
		k--
	}
	for k < at-1 {
		if sjisLead(s[k]) {
			k += 2
		} else {
			k++
		}
	}
	return k == at-1
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

// domainRead is a domain read by domainAfter.
type domainRead struct {
	// domain is the domain as a reader reads it, without blanks and
	// comments (raw: not normalized).
	domain string
	// alt is set when labels were joined across blanks, folds or
	// comments: the labels before the first such join, which a reader
	// may take for the whole domain.
	alt string
	// end is where the domain ends; lastLabel where its last label
	// starts.
	end, lastLabel int
}

// domainAfter reads the domain after the "@" at s[at]: an address literal,
// or labels, with blanks and comments allowed around "@" and the dots
// (obs-domain): a client shows `a@city.example.jp .evil.example.com` as
// one address in evil.example.com. Labels end at any character that
// breaks an address (see runeBreak); the ideographic full stops are dots.
// A label followed by "@" is the local part of the next address, not
// part of this domain. With names, labels are read as in a display name
// (see labelEnd).
func domainAfter(s string, at int, names bool) domainRead {
	k := skipCFWS(s, at+1)
	if k < len(s) && s[k] == '[' {
		j := strings.IndexAny(s[k+1:], "[]\\@")
		if j < 0 || s[k+1+j] != ']' {
			return domainRead{end: k}
		}
		return domainRead{domain: s[k : k+j+2], end: k + j + 2, lastLabel: k}
	}
	if k < len(s) && s[k] >= 0x80 {
		if r, _ := utf8.DecodeRuneInString(s[k:]); r == utf8.RuneError {
			return domainRead{end: k}
		}
	}
	for dotLen(s, k) > 0 {
		k += dotLen(s, k) // stray leading dots
	}
	d := domainRead{end: k, lastLabel: k}
	start := k
	var joined []byte // the labels, once a join made them discontiguous
	for {
		j := labelEnd(s, k, names)
		if j == k {
			break
		}
		if joined != nil {
			joined = append(append(joined, '.'), s[k:j]...)
		}
		d.end, d.lastLabel = j, k
		// The next label, after a dot with blanks or comments allowed on
		// either side; but not the local part of the next address.
		m := skipCFWS(s, j)
		n := dotLen(s, m)
		if n == 0 {
			break
		}
		p := skipCFWS(s, m+n)
		for dotLen(s, p) > 0 {
			p = skipCFWS(s, p+dotLen(s, p)) // "a..b" is read as "a.b"
		}
		q := labelEnd(s, p, names)
		if q == p {
			break
		}
		if r := skipCFWS(s, q); r < len(s) && s[r] == '@' {
			break
		}
		if joined == nil && (m != j || p != m+n) {
			d.alt = s[start:j]
			joined = append([]byte(nil), s[start:j]...)
		}
		k = p
	}
	switch {
	case joined != nil:
		d.domain = string(joined)
	case d.end > start:
		d.domain = s[start:d.end]
	}
	return d
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
