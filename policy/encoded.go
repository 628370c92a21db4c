package policy

import (
	"bytes"
	"encoding/base64"
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

// decodedWords returns the decoded text of the runs of encoded-words in s
// that may hide an address (see hidingWords), each followed by a space;
// words that do not decode are left out (the raw text was scanned
// already). The words of a run are joined without the blanks between them,
// as RFC 2047 (section 6.2), clients and net/mail join them: an address
// cut across words (`=?UTF-8?Q?b?= =?UTF-8?Q?=40ext.example?=`) is shown
// whole. A run also yields its joined reading (see joinedReading) when a
// charset conversion could read it otherwise.
func decodedWords(s string) string {
	var b strings.Builder
	hidingWords(s, func(run string) bool {
		eachWord(run, func(word string) {
			if dec, err := wordDecoder.Decode(word); err == nil {
				b.WriteString(dec)
			}
		})
		b.WriteByte(' ')
		if joined, ok := joinedReading(run); ok {
			b.WriteString(joined)
			b.WriteByte(' ')
		}
		return true
	})
	return b.String()
}

// sameCharset reports whether two encoded-words' charsets are one, their
// RFC 2231 languages aside (`UTF-8*ja` and `UTF-8`): the word decoder
// converts both the same, and a client joining the bytes of adjacent words
// joins them.
func sameCharset(a, b string) bool {
	return strings.EqualFold(withoutLanguage(a), withoutLanguage(b))
}

// eachWord calls f with each encoded-word of run, a run of adjacent
// encoded-words as hidingWords yields it.
func eachWord(run string, f func(word string)) {
	for i := 0; i < len(run); {
		if isBlank(run[i]) {
			i++
			continue
		}
		end, _ := encodedWordEnd(run, i)
		if end < 0 {
			return // not reached: hidingWords yields words and blanks
		}
		f(run[i:end])
		i = end
	}
}

// joinedReading returns run decoded as clients that join the bytes of
// adjacent words in one charset before converting it read it: a character
// cut across words (`=?Shift_JIS?Q?b=81?= =?Shift_JIS?Q?=97ext.example?=`,
// b＠ext.example), an ISO-2022-JP escape in one word that sets the next
// words' characters. ok is false when no two adjacent words share a
// charset that is converted: the text is the one decodedWords reads
// already.
func joinedReading(run string) (string, bool) {
	var out strings.Builder
	var cs string
	var raw []byte
	words, joined := 0, false
	flush := func() {
		if words > 1 && !passThrough(cs) {
			joined = true
		}
		if words > 0 {
			if r, err := wordDecoder.CharsetReader(cs, bytes.NewReader(raw)); err == nil {
				if dec, err := io.ReadAll(r); err == nil {
					out.Write(dec)
				}
			}
		}
		raw, words = raw[:0], 0
	}
	eachWord(run, func(word string) {
		wcs, text, ok := wordBytes(word)
		if !ok || !sameCharset(wcs, cs) {
			flush()
		}
		if ok {
			cs = wcs
			raw = append(raw, text...)
			words++
		}
	})
	flush()
	return out.String(), joined
}

// passThrough reports whether a charset's bytes are converted one by one,
// so that joining the bytes of words before converting reads the same.
func passThrough(cs string) bool {
	cs = withoutLanguage(cs)
	return strings.EqualFold(cs, "utf-8") || strings.EqualFold(cs, "us-ascii") || strings.EqualFold(cs, "iso-8859-1")
}

// wordBytes returns the charset of the encoded-word word and its text
// decoded from Q or B, not converted; ok is false for an encoding that is
// neither, or broken base64 (the word decoder leaves such words out).
func wordBytes(word string) (cs string, text []byte, ok bool) {
	cs, rest, _ := strings.Cut(word[2:], "?")
	enc, rest, _ := strings.Cut(rest, "?")
	t := strings.TrimSuffix(rest, "?=")
	switch enc {
	case "Q", "q":
		buf := make([]byte, len(t))
		return cs, buf[:qDecode(buf, t)], true
	case "B", "b":
		b, err := base64.StdEncoding.DecodeString(t)
		return cs, b, err == nil
	}
	return cs, nil, false
}

// mayHideInWords reports whether s holds a run of encoded-words that the
// lenient reader decodes and that may hide an address: the fast scanner
// leaves such fields to the full parser and the lenient reader. Both ask
// hidingWords, so they cannot disagree on where a word or a run begins and
// ends.
func mayHideInWords(s string) bool {
	found := false
	hidingWords(s, func(string) bool {
		found = true
		return false
	})
	return found
}

// hidingWords calls yield with each run of encoded-words of s, as a client
// delimits the words and joins them, that may hide an address (see
// runMayHide), until yield returns false. A run is one encoded-word, or
// several separated by blanks and line breaks only, or by nothing: a
// client decodes them as one text (RFC 2047 6.2), so an address may be cut
// across them. Converting a charset costs far more than looking at the
// bytes: Japanese names, the usual encoded-words, are not converted.
func hidingWords(s string, yield func(run string) bool) {
	// The span of non-breaking bytes around the current word, and how many
	// '@' it holds: computed once per span, so the scan stays linear.
	spanStart, spanEnd, spanAts := 0, -1, 0
	// The run so far: s[first:last], no run when first < 0.
	first, last := -1, 0
	flush := func() bool {
		run := s[first:last]
		first = -1
		return !runMayHide(run) || yield(run)
	}
	for i := 0; ; {
		j := strings.Index(s[i:], "=?")
		if j < 0 {
			break
		}
		start := i + j
		end, stop := encodedWordEnd(s, start)
		if end < 0 {
			// No encoded-word starts between start and stop either.
			i = max(stop, start+2)
			continue
		}
		i = end
		if first >= 0 && !onlyBlanks(s[last:start]) && !flush() {
			return
		}
		if first < 0 && !wordFollows(s, end) && !mayHideAddress(s[start:end]) {
			// The usual Japanese name, one word: no need to look around
			// it.
			continue
		}
		if start >= spanEnd {
			spanStart = start
			for spanStart > 0 && !breaksWord(s[spanStart-1]) {
				spanStart--
			}
			spanEnd = start
			for spanEnd < len(s) && !breaksWord(s[spanEnd]) {
				spanEnd++
			}
			spanAts = strings.Count(s[spanStart:spanEnd], "@")
		}
		// An encoded-word replaces a whole word (RFC 2047 5): one glued
		// to other text (`x=?...?=`) or to an '@' (`a@=?...?=`, part of
		// an addr-spec) is not decoded by clients, nor by net/mail; it is
		// shown, and counted, as the raw text it is, and ends the run.
		// Encoded-words glued to each other are decoded. A raw '@' in the
		// span outside the word makes it part of an addr-spec, shown raw.
		// One inside the word's own text
		// (`=?UTF-8?Q?Sales@_c=40outside.example?=`, invalid, but some
		// clients decode it) does not: both readings are counted,
		// over-counting rather than missing what a client may show.
		glued := start > spanStart && !strings.HasSuffix(s[spanStart:start], "?=") ||
			end < spanEnd && !strings.HasPrefix(s[end:spanEnd], "=?")
		if glued || spanAts != strings.Count(s[start:end], "@") {
			if first >= 0 && !flush() {
				return
			}
			continue
		}
		if first < 0 {
			first = start
		}
		last = end
	}
	if first >= 0 {
		flush()
	}
}

// runMayHide reports whether the run of encoded-words s may decode to text
// with an address, as far as a look without converting the charset can
// tell: one of its words may (as mayHideAddress tells), or the bytes of
// adjacent words in one charset, joined as some clients join them before
// converting (a full-width at sign cut across two words), hold an "@".
// Each word is decoded once, into the joined bytes of its charset.
func runMayHide(s string) bool {
	var buf, src [512]byte
	var cs string
	n, words := 0, 0 // the joined bytes buf[:n] of the words in cs
	for i := 0; i < len(s); {
		if isBlank(s[i]) {
			i++
			continue
		}
		end, _ := encodedWordEnd(s, i)
		if end < 0 {
			return true // not reached: s is a run of words
		}
		wcs, rest, _ := strings.Cut(s[i+2:end], "?")
		enc, text, _ := strings.Cut(rest, "?")
		text = text[:len(text)-2]
		i = end
		if len(text) > 256 || len(text) > len(buf)-n {
			return true // longer than any name: to be safe
		}
		if words == 0 || wcs != cs && !sameCharset(wcs, cs) {
			if !asciiCompatible(wcs) {
				return true
			}
			if words > 1 && hasAt(cs, buf[:n]) {
				return true
			}
			cs, n, words = wcs, 0, 0
		}
		m := 0
		switch enc {
		case "Q", "q":
			m = qDecode(buf[n:], text)
		case "B", "b":
			var err error
			if m, err = base64.StdEncoding.Decode(buf[n:], src[:copy(src[:], text)]); err != nil {
				m = -1
			}
		default:
			m = -1
		}
		if m < 0 {
			// The word decoder leaves such a word out: it ends the
			// joined bytes.
			if words > 1 && hasAt(cs, buf[:n]) {
				return true
			}
			cs, n, words = "", 0, 0
			continue
		}
		if hasAt(wcs, buf[n:n+m]) {
			return true
		}
		n += m
		words++
	}
	return words > 1 && hasAt(cs, buf[:n])
}

// isBlank reports whether c is white space that may separate the
// encoded-words of a run: blanks, and the line breaks of a fold.
func isBlank(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n'
}

// onlyBlanks reports whether s is made of blanks only (or is empty).
func onlyBlanks(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isBlank(s[i]) {
			return false
		}
	}
	return true
}

// wordFollows reports whether an encoded-word may follow s[i:] after
// blanks, making a run with the word before i.
func wordFollows(s string, i int) bool {
	for i < len(s) && isBlank(s[i]) {
		i++
	}
	return strings.HasPrefix(s[i:], "=?")
}

// breaksWord reports whether c ends the run of text an encoded-word may be
// glued to: a blank or a special of RFC 5322 other than '.' and '@'.
func breaksWord(c byte) bool { return wordBreaks[c] }

var wordBreaks = func() (t [256]bool) {
	for c := range t {
		t[c] = c <= ' ' || strings.IndexByte(`()<>[]:;\",`, byte(c)) >= 0
	}
	return t
}()

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
