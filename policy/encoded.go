package policy

import (
	"io"
	"mime"
	"strings"

	"github.com/emersion/go-message/charset"
)

// This file decodes the RFC 2047 encoded-words of a field for the lenient
// reader: a client shows them decoded, and addresses inside count.

// wordDecoder decodes RFC 2047 encoded-words in the charsets go-message
// knows (UTF-8, ISO-2022-JP, Shift_JIS, EUC-JP, ...), with or without an
// RFC 2231 language (`=?UTF-8*ja?Q?...?=`), which clients show decoded.
var wordDecoder = mime.WordDecoder{CharsetReader: func(cs string, r io.Reader) (io.Reader, error) {
	cs = withoutLanguage(cs)
	if strings.EqualFold(cs, "utf-8") || strings.EqualFold(cs, "us-ascii") {
		return r, nil
	}
	conv, err := charset.Reader(cs, r)
	return smallCopy{conv}, err
}}

// smallCopy lets the word decoder's io.Copy read a converted word without
// its 32 KiB copy buffer, allocated per word: an encoded-word is at most a
// few hundred bytes.
type smallCopy struct{ io.Reader }

func (c smallCopy) WriteTo(w io.Writer) (int64, error) {
	b, err := io.ReadAll(c.Reader)
	if err != nil {
		return 0, err
	}
	n, err := w.Write(b)
	return int64(n), err
}

// withoutLanguage removes an RFC 2231 language ("*ja") from a charset.
func withoutLanguage(cs string) string {
	if i := strings.IndexByte(cs, '*'); i >= 0 {
		return cs[:i]
	}
	return cs
}

// decodedWords returns the decoded text of the encoded-words in s that may
// hide an address (see hidingWords), each followed by a space; words that
// do not decode are left out (the raw text was scanned already).
func decodedWords(s string) string {
	var b strings.Builder
	hidingWords(s, func(word string) bool {
		if dec, err := wordDecoder.Decode(word); err == nil {
			b.WriteString(dec)
			b.WriteByte(' ')
		}
		return true
	})
	return b.String()
}

// mayHideInWords reports whether s holds an encoded-word that the lenient
// reader decodes and that may hide an address: the fast scanner leaves
// such fields to the full parser and the lenient reader. Both ask
// hidingWords, so they cannot disagree on where a word begins and ends.
func mayHideInWords(s string) bool {
	found := false
	hidingWords(s, func(string) bool {
		found = true
		return false
	})
	return found
}

// hidingWords calls yield with each encoded-word of s, as a client
// delimits it, that may hide an address (see mayHideAddress), until yield
// returns false. Converting a charset costs far more than looking at the
// bytes: Japanese names, the usual encoded-words, are not converted.
func hidingWords(s string, yield func(word string) bool) {
	// The run of non-breaking bytes around the current word, and how many
	// '@' it holds: computed once per run, so the scan stays linear.
	runStart, runEnd, runAts := 0, -1, 0
	for i := 0; ; {
		j := strings.Index(s[i:], "=?")
		if j < 0 {
			return
		}
		start := i + j
		end, stop := encodedWordEnd(s, start)
		if end < 0 {
			// No encoded-word starts between start and stop either.
			i = max(stop, start+2)
			continue
		}
		if !mayHideAddress(s[start:end]) {
			// The usual Japanese name: no need to look around it.
			i = end
			continue
		}
		if start >= runEnd {
			runStart = start
			for runStart > 0 && !breaksWord(s[runStart-1]) {
				runStart--
			}
			runEnd = start
			for runEnd < len(s) && !breaksWord(s[runEnd]) {
				runEnd++
			}
			runAts = strings.Count(s[runStart:runEnd], "@")
		}
		// An encoded-word replaces a whole word (RFC 2047 5): one glued
		// to other text (`x=?...?=`) or to an '@' (`a@=?...?=`, part of
		// an addr-spec) is not decoded by clients, nor by net/mail; it is
		// shown, and counted, as the raw text it is. Encoded-words glued
		// to each other are decoded. A raw '@' in the run outside the word
		// makes it part of an addr-spec, shown raw. One inside the word's
		// own text (`=?UTF-8?Q?Sales@_c=40outside.example?=`, invalid, but
		// some clients decode it) does not: both readings are counted,
		// over-counting rather than missing what a client may show.
		glued := start > runStart && !strings.HasSuffix(s[runStart:start], "?=") ||
			end < runEnd && !strings.HasPrefix(s[end:runEnd], "=?")
		if !glued && runAts == strings.Count(s[start:end], "@") && !yield(s[start:end]) {
			return
		}
		i = end
	}
}

// breaksWord reports whether c ends the run of text an encoded-word may be
// glued to: a blank or a special of RFC 5322 other than '.' and '@'.
func breaksWord(c byte) bool {
	return c <= ' ' || strings.IndexByte(`()<>[]:;\",`, c) >= 0
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
