package policy

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file says what a character is to a person reading an address:
// part of it, a dot, or a break between two (see runeClass), and how an
// address written inside a display name ends.

// fullWidthAts replaces the full-width commercial at (U+FF20) and the
// small one (U+FE6B) by "@": Japanese input methods type them, and a
// reader takes `b＠ext.example` for an address.
func fullWidthAts(s string) string {
	if strings.Contains(s, "\uff20") || strings.Contains(s, "\ufe6b") {
		return fullWidthAtReplacer.Replace(s)
	}
	return s
}

var fullWidthAtReplacer = strings.NewReplacer("\uff20", "@", "\ufe6b", "@")

// runeClass says what a character outside ASCII is inside an address.
type runeClass int

const (
	// runeText may be part of a local part or a domain label: letters,
	// marks and digits of any script, and bytes that are not UTF-8
	// (Shift_JIS, EUC-JP, Latin-1 text).
	runeText runeClass = iota
	// runeDot is a label dot in a domain: the ideographic full stop 。,
	// the full-width ．and the half-width ｡, which UTS #46 maps to ".".
	runeDot
	// runeBreak ends an address: white space of any kind, punctuation
	// (Japanese separators 、，､・；), symbols (☆ →), format characters
	// such as the zero width space, line and paragraph separators. A
	// reader sees the addresses on either side apart; no registry allows
	// these in a domain name.
	runeBreak
)

// classifyRune returns the class and the length of the character at s[i],
// a byte of at least 0x80.
func classifyRune(s string, i int) (runeClass, int) {
	r, n := utf8.DecodeRuneInString(s[i:])
	return classOf(r, n), n
}

// classifyRuneBefore is classifyRune for the character that ends at s[j].
func classifyRuneBefore(s string, j int) (runeClass, int) {
	r, n := utf8.DecodeLastRuneInString(s[:j])
	return classOf(r, n), n
}

func classOf(r rune, n int) runeClass {
	switch {
	case r == utf8.RuneError && n <= 1:
		return runeText
	case r == '\u3002' || r == '\uff0e' || r == '\uff61':
		return runeDot
	case unicode.IsLetter(r) || unicode.IsMark(r) || unicode.IsNumber(r):
		return runeText
	}
	return runeBreak
}

// atomStart returns the start of the run of atext characters and dots
// that ends at j, not before floor, stopping at any character that breaks
// an address (see runeBreak).
func atomStart(s string, j, floor int) int {
	for j > floor && atext[s[j-1]] {
		if s[j-1] >= 0x80 {
			class, n := classifyRuneBefore(s, j)
			if class != runeText || j-n < floor {
				break
			}
			j -= n
			continue
		}
		j--
	}
	return j
}

// labelEnd returns the end of the domain label that starts at i. Outside
// names a label is ASCII atext and any text character (runeText). In a
// display name or comment (names) it is what a hostname holds: a label
// that starts in ASCII is letters, digits, "-" and "_" and ends where
// other text starts (`a@ext.example様` is in ext.example); one that starts
// with another script goes on with its letters (`例え.jp`).
func labelEnd(s string, i int, names bool) int {
	start := i
	for i < len(s) {
		c := s[i]
		if c < 0x80 {
			if c == '.' || !atext[c] || names && !isAlnum(c) && c != '-' && c != '_' {
				break
			}
			i++
			continue
		}
		class, n := classifyRune(s, i)
		if class != runeText || names && i > start && s[start] < 0x80 {
			break
		}
		i += n
	}
	if names {
		for i > start && s[i-1] == '-' {
			i--
		}
	}
	return i
}

// dotLen returns the length of the label dot at s[i] ("." or one of the
// ideographic dots, see runeDot), or 0.
func dotLen(s string, i int) int {
	if i >= len(s) {
		return 0
	}
	if s[i] == '.' {
		return 1
	}
	if s[i] >= 0x80 {
		if class, n := classifyRune(s, i); class == runeDot {
			return n
		}
	}
	return 0
}

// nameLocalPart trims a local part found in a display name or comment to
// the ASCII letters, digits and `._-+%!` that end it: `'a`, `（a`,
// `山田太郎a` and `Yamada/a` are `a`, as a reader sees it.
func nameLocalPart(local string) string {
	i := len(local)
	for i > 0 && nameLocal[local[i-1]] {
		i--
	}
	return strings.TrimLeft(local[i:], ".-")
}

var nameLocal = func() (t [256]bool) {
	for c := range t {
		t[c] = isAlnum(byte(c)) || strings.IndexByte("._-+%!", byte(c)) >= 0
	}
	return t
}()
