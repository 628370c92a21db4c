package policy

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// The property tests build fields from parts whose meaning is known and
// check the count against it, instead of checking the reader against
// itself: N addresses joined by any separator a reader sees as a break are
// at least N addresses; one address whose display name or comment repeats
// it with punctuation around is exactly one.

// separators are what people and clients put between addresses: commas,
// white space of every kind (Unicode Zs, line and paragraph separators,
// the zero width space), folds, comments, Japanese punctuation, symbols.
var separators = []string{
	", ", ",", ";", " ", "\t", "\r\n ", "\r\n\t", "  ",
	"\u00a0", "\u1680", "\u2000", "\u2002", "\u2003", "\u2009", "\u200a", "\u202f", "\u205f", "\u3000",
	"\u2028", "\u2029", "\u200b", "\u0085",
	"、", "，", "､", "・", "；", "。", "｡", "．", "／", "｜", "→", "☆", "\u3000\u3000",
	" (x) ", "(note)", " , ", ", (c) ",
}

// addressForms write the address a in the forms a list holds.
var addressForms = []func(a string, i int) string{
	func(a string, i int) string { return a },
	func(a string, i int) string { return fmt.Sprintf("Partner %d <%s>", i, a) },
	func(a string, i int) string { return fmt.Sprintf("\"Suzuki, %d\" <%s>", i, a) },
	func(a string, i int) string { return "<" + a + ">" },
	func(a string, i int) string { return strings.ToUpper(a) },
}

// joinedField builds a field of n addresses from the choices in b and
// returns it with the keys that must be counted.
func joinedField(b []byte, n int) (string, []string) {
	pick := func(k int) int {
		if len(b) == 0 {
			return 0
		}
		return int(b[k%len(b)])
	}
	var v strings.Builder
	var keys []string
	for i := 0; i < n; i++ {
		if i > 0 {
			v.WriteString(separators[pick(2*i)%len(separators)])
		}
		a := fmt.Sprintf("u%d@ext%d.example", i, i)
		keys = append(keys, a)
		v.WriteString(addressForms[pick(2*i+1)%len(addressForms)](a, i))
	}
	return v.String(), keys
}

// namePunctuation surrounds an address in a display name or comment.
var namePunctuation = []string{
	"", "'", "’", "（", "）", "(", ")", "【", "】", "「", "」", "『", "』", "[", "]", "<", ">",
	"山田太郎", "Yamada/", "Yamada ", "様", "殿", "：", ":", " ", "\u3000", "-", ".", ",", "・", "／", "《", "》",
}

// namedField writes one address whose display name (or comment) holds
// the address with text around it, in a form chosen by b.
func namedField(b []byte) string {
	pick := func(k int) int {
		if len(b) == 0 {
			return 0
		}
		return int(b[k%len(b)])
	}
	a := "taro.yamada@ext.example"
	after := namePunctuation[pick(1)%len(namePunctuation)]
	if after != "" && isAlnum(after[0]) {
		// `a@ext.exampleYamada` is in ext.exampleyamada for anyone.
		after = " " + after
	}
	name := namePunctuation[pick(0)%len(namePunctuation)] + a + after
	switch pick(2) % 4 {
	case 0:
		return `"` + name + `" <` + a + `>`
	case 1:
		return a + " (" + strings.NewReplacer("(", "", ")", "").Replace(name) + ")"
	case 2:
		return "=?UTF-8?B?" + base64.StdEncoding.EncodeToString([]byte(name)) + "?= <" + a + ">"
	default:
		return `"` + strings.ReplaceAll(name, "@", "＠") + `" <` + a + `>`
	}
}

// cutField writes a name that holds an outside address, cut at a byte
// chosen by b across two adjacent encoded-words (RFC 2047 6.2: a client
// joins them), with an internal address: in a display name, a quoted
// string or a comment, Q- or B-encoded, the words separated by a blank, a
// fold or nothing. It returns the field and the outside address.
func cutField(b []byte) (string, string) {
	pick := func(k int) int {
		if len(b) == 0 {
			return 0
		}
		return int(b[k%len(b)])
	}
	a := "taro.yamada@ext.example"
	name := namePunctuation[pick(0)%len(namePunctuation)] + a
	cut := 1 + pick(1)%(len(name)-1)
	word := func(s string) string {
		if pick(2)%2 == 0 {
			return "=?UTF-8?B?" + base64.StdEncoding.EncodeToString([]byte(s)) + "?="
		}
		var q strings.Builder
		for i := 0; i < len(s); i++ {
			fmt.Fprintf(&q, "=%02X", s[i])
		}
		return "=?UTF-8?Q?" + q.String() + "?="
	}
	words := word(name[:cut]) + []string{" ", "\r\n ", "\t", "", "  "}[pick(3)%5] + word(name[cut:])
	switch pick(4) % 3 {
	case 0:
		return words + " <staff@city.example.jp>", a
	case 1:
		return `"` + words + `" <staff@city.example.jp>`, a
	default:
		return "staff@city.example.jp (" + words + ")", a
	}
}

func checkCut(t *testing.T, b []byte) {
	v, a := cutField(b)
	for _, c := range ParseAddressField(v).Addrs {
		if c.key() == a {
			return
		}
	}
	t.Fatalf("%q: %s not counted", v, a)
}

func checkJoined(t *testing.T, b []byte, n int) {
	v, _ := joinedField(b, n)
	// Each is counted, as itself or with text a reader may take for more
	// of its domain (`a@ext1.example｡Partner 2 <b@ext2.example>`), and
	// never as internal.
	counted := map[string]bool{}
	for _, a := range ParseAddressField(v).Addrs {
		if a.Domain == "" || strings.HasPrefix(a.Domain, "city.") {
			t.Fatalf("%q: %q counted as internal", v, a.Addr)
		}
		counted[a.key()] = true
	}
	if len(counted) < n {
		t.Fatalf("%q: %d addresses counted, want %d: %v", v, len(counted), n, counted)
	}
}

func checkNamed(t *testing.T, b []byte) {
	v := namedField(b)
	pa := ParseAddressField(v)
	keys := map[string]bool{}
	for _, a := range pa.Addrs {
		keys[a.key()] = true
	}
	if len(keys) != 1 {
		t.Fatalf("%q: %d addresses %v, want 1", v, len(keys), keys)
	}
}

// TestJoinedAddressesCounted: every separator between every form, for
// two addresses; random lists of up to 12.
func TestJoinedAddressesCounted(t *testing.T) {
	for s := range separators {
		for f1 := range addressForms {
			for f2 := range addressForms {
				checkJoined(t, []byte{byte(f1), byte(s), byte(f2)}, 2)
			}
		}
	}
	r := rand.New(rand.NewPCG(10, 10))
	for range 2000 {
		b := make([]byte, 24)
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		checkJoined(t, b, 2+r.IntN(11))
	}
}

// TestNamedAddressCountedOnce: every punctuation on either side, in every
// form.
func TestNamedAddressCountedOnce(t *testing.T) {
	for l := range namePunctuation {
		for r := range namePunctuation {
			for form := range 4 {
				checkNamed(t, []byte{byte(l), byte(r), byte(form)})
			}
		}
	}
}

// TestCutAddressCounted: an address cut across two encoded-words at every
// byte, in every form.
func TestCutAddressCounted(t *testing.T) {
	a := "taro.yamada@ext.example"
	for p := range namePunctuation {
		for cut := range len(namePunctuation[p]) + len(a) - 1 {
			for form := range 30 {
				checkCut(t, []byte{byte(p), byte(cut), byte(form % 2), byte(form % 5), byte(form % 3)})
			}
		}
	}
}

// FuzzVisibleProperty explores the same properties with the fuzzer's
// choices.
func FuzzVisibleProperty(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3}, uint8(3))
	f.Add([]byte{8, 0, 30, 1}, uint8(2))
	f.Fuzz(func(t *testing.T, b []byte, n uint8) {
		checkJoined(t, b, 2+int(n%11))
		checkNamed(t, b)
		checkCut(t, b)
	})
}
