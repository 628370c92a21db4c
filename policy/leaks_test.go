package policy

import (
	"sort"
	"strings"
	"testing"
)

// leakCase is a To value that a mail client shows as two or more
// addresses, at least one outside: each must be counted as it is shown.
type leakCase struct {
	name string
	to   string
	// want are the distinct keys of the addresses counted, sorted.
	want []string
	// external is how many of them are external.
	external int
}

// leakCases are the header shapes that once passed unchanged although a
// recipient saw two or more addresses, one outside. They are used by
// TestVisibleLeaks, by the fuzz seeds, and (one of each kind) through
// Postfix in e2e.
var leakCases = []leakCase{
	// Bare local parts: Postfix qualifies them with $myorigin.
	{"bare local parts", "alice, bob, c@ext3.example.com",
		[]string{"alice@", "bob@", "c@ext3.example.com"}, 1},
	{"bare name in a group", "Team: alice, b@ext.example;",
		[]string{"alice@", "b@ext.example"}, 1},
	// Addresses inside encoded-words, as clients show them decoded.
	{"encoded-word UTF-8 Q", "=?UTF-8?Q?b=40ext2.example.org?= <a@city.example.jp>",
		[]string{"a@city.example.jp", "b@ext2.example.org"}, 1},
	{"encoded-word UTF-8 B in a quoted string", `"=?UTF-8?B?YkBleHQyLmV4YW1wbGUub3Jn?=" <a@city.example.jp>`,
		[]string{"a@city.example.jp", "b@ext2.example.org"}, 1},
	{"encoded-word with a raw @ in its own text", `"=?UTF-8?Q?Sales@_c=40outside.example?=" <x@city.example.jp>, y@city.example.jp`,
		[]string{"c@outside.example", "sales@c", "x@city.example.jp", "y@city.example.jp"}, 2},
	{"encoded-word Shift_JIS", "=?Shift_JIS?B?jlKTYyBiQGV4dDIuZXhhbXBsZS5vcmc=?= <a@city.example.jp>",
		[]string{"a@city.example.jp", "b@ext2.example.org"}, 1},
	{"encoded-word ISO-2022-JP", "=?ISO-2022-JP?B?GyRCOzNFRBsoQiBiQGV4dDIuZXhhbXBsZS5vcmc=?= <a@city.example.jp>",
		[]string{"a@city.example.jp", "b@ext2.example.org"}, 1},
	{"encoded-word in a comment", "a@city.example.jp (=?UTF-8?Q?b=40ext2.example.org?=)",
		[]string{"a@city.example.jp", "b@ext2.example.org"}, 1},
	// RFC 2047 6.2: adjacent encoded-words, separated by blanks or folds
	// or by nothing, are decoded as one text; an address cut across them
	// is shown whole (found by an audit: each word was decoded alone).
	{"address cut across adjacent encoded-words", "=?UTF-8?Q?b?= =?UTF-8?Q?=40ext2.example.org?= <a@ext1.example.com>",
		[]string{"a@ext1.example.com", "b@ext2.example.org"}, 2},
	{"address cut across folded ISO-2022-JP B words", "=?ISO-2022-JP?B?GyRCOzNFRBsoQiBi?=\r\n =?ISO-2022-JP?B?QGV4dDIuZXhhbXBsZS5vcmc=?= <a@ext1.example.com>",
		[]string{"a@ext1.example.com", "b@ext2.example.org"}, 2},
	{"address cut after the @ across encoded-words", "=?UTF-8?Q?b=40?= =?UTF-8?Q?ext2.example.org?= <a@ext1.example.com>",
		[]string{"a@ext1.example.com", "b@ext2.example.org"}, 2},
	{"address cut across glued encoded-words", "=?UTF-8?Q?b?==?UTF-8?Q?=40ext2.example.org?= <a@ext1.example.com>",
		[]string{"a@ext1.example.com", "b@ext2.example.org"}, 2},
	{"address cut across encoded-words in a comment", "(=?UTF-8?Q?b?= =?UTF-8?Q?=40ext2.example.org?=) a@ext1.example.com",
		[]string{"a@ext1.example.com", "b@ext2.example.org"}, 2},
	{"address cut across encoded-words in a quoted string", `"=?UTF-8?B?Yg==?= =?UTF-8?B?QGV4dDIuZXhhbXBsZS5vcmc=?=" <a@ext1.example.com>`,
		[]string{"a@ext1.example.com", "b@ext2.example.org"}, 2},
	// A character cut across two words of one charset: clients that join
	// the bytes before converting show it; either reading counts.
	{"full-width at cut across UTF-8 words", "=?UTF-8?Q?b=EF?= =?UTF-8?Q?=BC=A0ext2.example.org?= <a@ext1.example.com>",
		[]string{"a@ext1.example.com", "b@ext2.example.org"}, 2},
	{"full-width at cut across Shift_JIS words", "=?Shift_JIS?Q?b=81?= =?Shift_JIS?Q?=97ext2.example.org?= <a@ext1.example.com>",
		[]string{"a@ext1.example.com", "b@ext2.example.org"}, 2},
	{"full-width at cut across Shift_JIS words after a UTF-8 word", "=?UTF-8?Q?b?= =?Shift_JIS?Q?=81?= =?Shift_JIS?Q?=97ext2.example.org?= <a@ext1.example.com>",
		[]string{"a@ext1.example.com", "b@ext2.example.org"}, 2},
	// Review: the charsets of adjacent words compare without their RFC
	// 2231 language (`UTF-8*ja` and `UTF-8` are one).
	{"full-width at cut across UTF-8 words, one with a language", "=?UTF-8*ja?Q?b=EF=BC?= =?UTF-8?Q?=A0ext2.example.org?= <a@ext1.example.com>",
		[]string{"a@ext1.example.com", "b@ext2.example.org"}, 2},
	{"full-width at cut across Shift_JIS words, one with a language", "=?Shift_JIS*ja?Q?b=81?= =?Shift_JIS?Q?=97ext2.example.org?= <a@ext1.example.com>",
		[]string{"a@ext1.example.com", "b@ext2.example.org"}, 2},
	{"ISO-2022-JP escape carried into the next word", "=?ISO-2022-JP?B?YhskQg==?= =?ISO-2022-JP?B?IXcbKEJleHQyLmV4YW1wbGUub3Jn?= <a@ext1.example.com>",
		[]string{"a@ext1.example.com", "b@ext2.example.org"}, 2},
	// Obsolete syntax: blanks, folds and comments between the parts.
	{"blank before @", "a@ext1.example.com, b @ext2.example.com",
		[]string{"a@ext1.example.com", "b@ext2.example.com"}, 2},
	{"blanks around @ in every entry", "a @ ext1.example.com, b @ext2.example.com",
		[]string{"a@ext1.example.com", "b@ext2.example.com"}, 2},
	{"comment before @", "a@city.example.jp, b(note)@ext2.example.com",
		[]string{"a@city.example.jp", "b@ext2.example.com"}, 1},
	{"comment after @", "a@city.example.jp, b@(note)ext2.example.com",
		[]string{"a@city.example.jp", "b@ext2.example.com"}, 1},
	{"blank before a dot of the domain", "a@city.example.jp .evil.example.com, b@city.example.jp",
		[]string{"a@city.example.jp.evil.example.com", "b@city.example.jp"}, 1},
	{"blank after a dot of the domain", "a@city.example.jp. evil.example.com, b@city.example.jp",
		[]string{"a@city.example.jp.evil.example.com", "b@city.example.jp"}, 1},
	{"fold in a domain", "a@city.example.jp\r\n .evil.example.com, b@city.example.jp",
		[]string{"a@city.example.jp.evil.example.com", "b@city.example.jp"}, 1},
	{"obs-local-part", "john . smith@ext.example, b@city.example.jp",
		[]string{"b@city.example.jp", "john.smith@ext.example"}, 1},
	// 8-bit names that are not UTF-8.
	{"Shift_JIS quoted names ending in 0x5C", "\"\x95\x5c\" <a@city.example.jp>, \"\x95\x5c\" <b@ext.example>, c@city.example.jp",
		[]string{"a@city.example.jp", "b@ext.example", "c@city.example.jp"}, 1},
	{"raw ISO-2022-JP names holding quote bytes", "\x1b$B%\"\x1b(B <a@city.example.jp>, \x1b$B%\"\x1b(B <b@ext.example>",
		[]string{"a@city.example.jp", "b@ext.example"}, 1},
	{"Shift_JIS ideographic space is not an @", "\x8eR\x93c\x81@\x91\xbe\x98Y <a@ext.example>",
		[]string{"a@ext.example"}, 1},
	{"Postfix rewrite of a broken To with Shift_JIS", "\"\x95\x5c <a@city.example.jp>, b@ext.example\"@mx.city.example.jp",
		[]string{"a@city.example.jp", "b@ext.example", "\uFFFD <a@city.example.jp>, b@ext.example@mx.city.example.jp"}, 1}, // ToLower turns the lone byte into U+FFFD
	// Japanese separators.
	{"ideographic comma", "a@city.example.jp、b@ext.example",
		[]string{"a@city.example.jp", "b@ext.example"}, 1},
	{"ideographic space", "a@city.example.jp\u3000b@ext.example",
		[]string{"a@city.example.jp", "b@ext.example"}, 1},
	{"full-width comma", "a@city.example.jp，b@ext.example",
		[]string{"a@city.example.jp", "b@ext.example"}, 1},
	// Look-alike and routed addresses.
	{"dotted capital I", "a@cİty.example.jp, b@city.example.jp",
		[]string{"a@xn--city-rwc.example.jp", "b@city.example.jp"}, 1},
	{"percent-routed local part", "x%ext.example.com@city.example.jp, b@city.example.jp",
		[]string{"b@city.example.jp", "x%ext.example.com@city.example.jp"}, 1},
	{"bang-routed local part", "ext.example.com!x@city.example.jp, b@city.example.jp",
		[]string{"b@city.example.jp", "ext.example.com!x@city.example.jp"}, 1},
	// Review of issue 10, finding 1: a non-ASCII separator ends a domain.
	{"no-break space between addresses", "a@ext1.example\u00a0b@ext2.example",
		[]string{"a@ext1.example", "b@ext2.example"}, 2},
	{"ideographic full stop between addresses", "a@ext1.example\u3002b@ext2.example",
		[]string{"a@ext1.example", "b@ext2.example"}, 2},
	{"half-width ideographic comma", "a@ext1.example\uff64b@ext2.example",
		[]string{"a@ext1.example", "b@ext2.example"}, 2},
	{"katakana middle dot", "a@ext1.example\u30fbb@ext2.example",
		[]string{"a@ext1.example", "b@ext2.example"}, 2},
	{"full-width semicolon", "a@ext1.example\uff1bb@ext2.example",
		[]string{"a@ext1.example", "b@ext2.example"}, 2},
	{"em space", "a@ext1.example\u2003b@ext2.example",
		[]string{"a@ext1.example", "b@ext2.example"}, 2},
	{"zero width space", "a@ext1.example\u200bb@ext2.example",
		[]string{"a@ext1.example", "b@ext2.example"}, 2},
	{"line separator", "a@ext1.example\u2028b@ext2.example",
		[]string{"a@ext1.example", "b@ext2.example"}, 2},
	{"domain running into the next address", "a@city.example.jp.b@ext.example",
		[]string{"a@city.example.jp", "b@ext.example"}, 1},
	{"no break at all before the next address", "a@ext1.exampleb@ext2.example",
		[]string{"a@ext1", "exampleb@ext2.example"}, 2},
	{"a one-label domain running into the next address", "a@hostb@ext2.example, c@city.example.jp",
		[]string{"a@hostb", "c@city.example.jp", "hostb@ext2.example"}, 2},
	// Finding 3: an 8-bit byte before "@" that is not Shift_JIS's first.
	{"half-width katakana byte before @", "x\xb1@ext1.example, y\xb1@ext2.example, c@city.example.jp",
		[]string{"c@city.example.jp", "x\uFFFD@ext1.example", "y\uFFFD@ext2.example"}, 2},
	{"Latin-1 letter before @", "Jos\xe9@ext1.example, c@city.example.jp",
		[]string{"c@city.example.jp", "jos\uFFFD@ext1.example"}, 1},
	// Finding 4: full-width at signs.
	{"full-width at", "b＠ext.example, c＠other.example",
		[]string{"b@ext.example", "c@other.example"}, 2},
	{"small at", "b﹫ext.example, c﹫other.example",
		[]string{"b@ext.example", "c@other.example"}, 2},
	{"full-width at in an encoded-word", "=?UTF-8?Q?b=EF=BC=A0ext2.example.org?= <a@city.example.jp>",
		[]string{"a@city.example.jp", "b@ext2.example.org"}, 1},
	{"full-width at in a quoted name", "\"b＠ext2.example.org\" <a@city.example.jp>",
		[]string{"a@city.example.jp", "b@ext2.example.org"}, 1},
	{"full-width at in a Shift_JIS encoded-word", "=?Shift_JIS?Q?b=81=97ext2.example.org?= <a@city.example.jp>",
		[]string{"a@city.example.jp", "b@ext2.example.org"}, 1},
	// Finding 5: labels joined across a fold make an internal reading of
	// an outside address; either reading counts.
	{"fold before an internal suffix", "a@city.example.jp, b@ext.example\r\n .city.example.jp",
		[]string{"a@city.example.jp", "b@ext.example.city.example.jp"}, 1},
	{"comment before an internal suffix", "a@city.example.jp, b@ext.example(x).city.example.jp",
		[]string{"a@city.example.jp", "b@ext.example.city.example.jp"}, 1},
	{"blanks around a dot before an internal suffix", "a@city.example.jp, b@ext.example . city.example.jp",
		[]string{"a@city.example.jp", "b@ext.example.city.example.jp"}, 1},
	// Finding 7: an RFC 2231 language in an encoded-word.
	{"encoded-word with a language", "=?UTF-8*ja?Q?b=40ext.example?= <a@city.example.jp>",
		[]string{"a@city.example.jp", "b@ext.example"}, 1},
	// A bare CR never ends the field: what follows is read with it.
	{"bare CR", "a@city.example.jp\rb@ext.example",
		[]string{"a@city.example.jp", "b@ext.example"}, 1},
	{"bare CR before a field name", "a@city.example.jp\rCc: b@ext.example",
		[]string{"a@city.example.jp", "b@ext.example"}, 1},
}

// TestVisibleLeaks: each shape is counted as a client shows it, and
// converts under the seed's rule (count: all, threshold 2).
func TestVisibleLeaks(t *testing.T) {
	cfg := cityConfig(t, nil)
	for _, tc := range leakCases {
		t.Run(tc.name, func(t *testing.T) {
			var keys []string
			for _, a := range ParseAddressField(tc.to).Addrs {
				keys = append(keys, a.key())
			}
			keys = distinct(keys)
			if strings.Join(keys, " ") != strings.Join(tc.want, " ") {
				t.Errorf("addresses %q, want %q", keys, tc.want)
			}
			d := Decide(cfg, Message{Sender: "staff@city.example.jp", Header: hdr("To", tc.to)})
			if d.ToExternal != tc.external {
				t.Errorf("%d external (%s), want %d", d.ToExternal, d.Reason, tc.external)
			}
			if len(tc.want) >= 2 && d.Action != Convert {
				t.Errorf("not converted: %v (%s)", d.Action, d.Reason)
			}
		})
	}
}

func distinct(keys []string) []string {
	sort.Strings(keys)
	out := keys[:0]
	for i, k := range keys {
		if i == 0 || k != keys[i-1] {
			out = append(out, k)
		}
	}
	return out
}

// TestVisibleNoFalseAlarms: shapes that look unusual but show one address,
// or only internal ones, are not over-counted.
func TestVisibleNoFalseAlarms(t *testing.T) {
	cfg := cityConfig(t, nil)
	for _, to := range []string{
		"=?UTF-8?B?44OG44K544OI?= <a@ext.example>",
		"=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?= <a@ext.example>",
		`"a@ext.example" <a@ext.example>`,
		"\"\x95\x5c\" <a@ext.example>",
		"\x8eR\x93c\x81@\x91\xbe\x98Y <a@ext.example>",
		"株式会社例、山田様 <a@ext.example>",
		"a@ｃｉｔｙ.example.jp, b@city。example。jp",
		"x%kikaku.city.example.jp@city.example.jp, b@city.example.jp",
		"undisclosed-recipients:;",
		"alice, bob",
		// Review of issue 10, finding 2: a display name that holds the
		// address with punctuation or words around it shows that address.
		`"'a@ext.example'" <a@ext.example>`,
		"\"山田太郎（a@ext.example）\" <a@ext.example>",
		"\"a@ext.example様\" <a@ext.example>",
		"\"山田太郎a@ext.example\" <a@ext.example>",
		"\"Yamada/a@ext.example\" <a@ext.example>",
		"\"【a@ext.example】\" <a@ext.example>",
		"a@ext.example (a@ext.example)",
		"=?UTF-8?Q?'a=40ext.example'?= <a@ext.example>",
		// Finding 3: Shift_JIS text with "@" as a second byte is a name.
		"\x8eR\x93c\x81@Taro <a@ext.example>",
	} {
		d := Decide(cfg, Message{Sender: "staff@city.example.jp", Header: hdr("To", to)})
		if d.Action != Pass {
			t.Errorf("%q: %v (%s)", to, d.Action, d.Reason)
		}
	}
}

// TestResentTo: Resent-To is its own list, counted and hidden like To;
// Resent-Cc is read like Cc.
func TestResentTo(t *testing.T) {
	tests := []struct {
		name   string
		mod    func(*Settings)
		header []Field
		action Action
		after  map[string][]string
	}{
		{"redirect to two outside parties", nil,
			hdr("To", "staff@city.example.jp", "Resent-To", "a@ext.example, b@other.example"),
			Convert, map[string][]string{"To": {"staff@city.example.jp"}, "Resent-To": {"undisclosed-recipients:;"}}},
		{"Resent-To counted apart from To", nil,
			hdr("To", "a@ext.example", "Resent-To", "b@other.example"),
			Pass, nil},
		{"both lists over the threshold", nil,
			hdr("To", "a@ext.example, c@city.example.jp", "Resent-To", "b@other.example, d@third.example", "Resent-To", "e@x.example"),
			Convert, map[string][]string{"To": {"undisclosed-recipients:;"}, "Resent-To": {"undisclosed-recipients:;"}}},
		{"Resent-Cc stays visible like Cc", nil,
			hdr("Resent-To", "a@ext.example", "Resent-Cc", "b@other.example, c@third.example"),
			Pass, nil},
		{"Resent-Cc with convert_cc", func(s *Settings) { s.ConvertCc = true },
			hdr("To", "staff@city.example.jp", "Resent-To", "a@ext.example", "Resent-Cc", "b@other.example"),
			Convert, map[string][]string{"To": {"staff@city.example.jp"}, "Resent-To": {"undisclosed-recipients:;"}, "Resent-Cc": nil}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(cityConfig(t, tc.mod), collect(tc.header...))
			if d.Action != tc.action {
				t.Fatalf("%v (%s), want %v", d.Action, d.Reason, tc.action)
			}
			out := Apply(tc.header, d.Edits)
			for name, want := range tc.after {
				var got []string
				for _, f := range out {
					if strings.EqualFold(f.Name, name) {
						got = append(got, f.Value)
					}
				}
				if strings.Join(got, "|") != strings.Join(want, "|") {
					t.Errorf("%s after conversion %q, want %q", name, got, want)
				}
			}
		})
	}
}

// TestCountDomains: count: domains counts organizations, the
// organization's own addresses together as one.
func TestCountDomains(t *testing.T) {
	domains := func(s *Settings) { s.Count = CountDomains }
	tests := []struct {
		name   string
		to     string
		action Action
	}{
		{"two staff of one partner see each other", "a@partner.example, b@partner.example", Pass},
		{"two companies", "a@partner.example, b@other.example", Convert},
		{"a colleague and one outside party", "staff@city.example.jp, a@partner.example", Convert},
		{"colleagues of several departments are one", "a@city.example.jp, b@kikaku.city.example.jp, c@partner.example", Convert},
		{"internal only", "a@city.example.jp, b@kikaku.city.example.jp", Pass},
		{"subdomains are organizations of their own", "a@a.example.com, b@b.example.com", Convert},
		{"case and IDN forms are one domain", "a@例え.jp, b@XN--R8JZ45G.JP", Pass},
		{"routed to another organization", "x%other.example@partner.example, a@partner.example", Convert},
		// Review of issue 10, finding 6: the routed domain and the
		// mailbox's own are both organizations a reader sees.
		{"routed through another organization", "x%partner.example@other.example, a@partner.example", Convert},
		{"one routed address alone", "x%partner.example@other.example", Pass},
		// An own domain that only relays to a partner is no second
		// organization (audit of issue 10; docs/configuration.md).
		{"routed through the own domain to the partner", "x%partner.example@city.example.jp, y@partner.example", Pass},
		{"bang path through the own domain to the partner", "partner.example!x@city.example.jp, y@partner.example", Pass},
		{"routed through the own domain to another organization", "x%other.example@city.example.jp, y@partner.example", Convert},
		// Finding 2: Outlook's quoted copy of the address is no second
		// organization.
		{"Outlook's quoted name of a partner", `"'a@partner.example'" <a@partner.example>, b@partner.example`, Pass},
		// Finding 5: either reading of a joined domain.
		{"joined domain with an outside first reading", "b@partner.example .city.example.jp, c@other.example", Convert},
	}
	cfg := cityConfig(t, domains)
	for _, tc := range tests {
		d := Decide(cfg, Message{Sender: "staff@city.example.jp", Header: hdr("To", tc.to)})
		if d.Action != tc.action {
			t.Errorf("%s: %v (%s), want %v", tc.name, d.Action, d.Reason, tc.action)
		}
	}
	three := cityConfig(t, func(s *Settings) { domains(s); s.Threshold = 3 })
	if d := Decide(three, Message{Sender: "staff@city.example.jp", Header: hdr("To", "a@x.example, b@x.example, c@city.example.jp")}); d.Action != Pass || !strings.Contains(d.Reason, "2 organizations") {
		t.Errorf("threshold 3: %v (%s)", d.Action, d.Reason)
	}
}

// TestQuoteRunsLinear: a field of never-closed quoted strings is read
// right (the benchmark BenchmarkHostileQuotes shows it is linear; it took
// 11 s for 256 KiB when each quote was scanned to the end).
func TestQuoteRunsLinear(t *testing.T) {
	v := "a@ext.example, " + strings.Repeat(`"\`, 128<<10) + " b@other.example"
	pa := ParseAddressField(v)
	if len(pa.Addrs) != 2 || pa.Mode != ParsedLenient {
		t.Fatalf("%d addresses, mode %v", len(pa.Addrs), pa.Mode)
	}
}

// TestPostfixRewriteOfRawJIS: what Postfix delivers for raw ISO-2022-JP
// display names (it quotes and folds inside the two-byte text); a client
// decoding it shows b@ext.example.
func TestPostfixRewriteOfRawJIS(t *testing.T) {
	v := "\"\x1b$B@\x1b(B <a\"@city.example.jp>, \x1b$B%,\r\n\t\"\x1b\"@mx.test.invalid (B <b@ext.example>"
	d := Decide(cityConfig(t, nil), Message{Sender: "staff@city.example.jp", Header: hdr("To", v)})
	if d.Action != Convert {
		t.Fatalf("%v (%s)", d.Action, d.Reason)
	}
}

// TestDedupeGrows: the hash set grows past its hint and still tells new
// keys from repeated ones, also in tables recycled from earlier sets of
// other sizes, which come back empty.
func TestDedupeGrows(t *testing.T) {
	key := func(i int) string {
		return strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strings.Repeat("y", i/26)
	}
	for round, n := range []int{5000, 40, 300, 5000, 9} {
		var d dedupe
		d.hint = 100 // grows past it for the large sets
		for i := 0; i < n; i++ {
			if !d.add(key(i)) {
				t.Fatalf("round %d: key %d seen as a repeat", round, i)
			}
		}
		for i := 0; i < n; i += 7 {
			if d.add(key(i)) {
				t.Fatalf("round %d: repeat %d seen as new", round, i)
			}
		}
		if n > len(d.arr) && d.n != n {
			t.Fatalf("round %d: %d keys in the table, want %d", round, d.n, n)
		}
		table := d.table
		d.release()
		for i, h := range table {
			if h != 0 {
				t.Fatalf("round %d: slot %d not cleared on release", round, i)
			}
		}
	}
}

// TestJapaneseNamesStayOnTheFastPath: encoded names whose bytes hold 0x40
// inside two-byte characters (だ in ISO-2022-JP, the ideographic space in
// Shift_JIS) are read by the fast scanner, not taken for a hidden "@".
func TestJapaneseNamesStayOnTheFastPath(t *testing.T) {
	for _, v := range []string{
		"=?ISO-2022-JP?B?GyRCOzNFRCRAGyhC?= <a@ext.example>, b@city.example.jp",
		"=?Shift_JIS?B?jlKTY4FAl2w=?= <a@ext.example>, b@city.example.jp",
		// A long name folded over adjacent words, read as one run.
		"=?ISO-2022-JP?B?GyRCOzNFRBsoQg==?=\r\n =?ISO-2022-JP?B?GyRCQkBPOiRAGyhC?= <a@ext.example>, b@city.example.jp",
	} {
		if addrs, ok := scanList(v); !ok || len(addrs) != 2 {
			t.Errorf("%q: fast path %v, %d addresses", v, ok, len(addrs))
		}
	}
}

// TestHasAtReadsISO2022JPAsTheDecoder: the look for an '@' in an
// ISO-2022-JP word, which decides whether the word is decoded at all,
// reads the bytes as golang.org/x/text's decoder does. An ESC that starts
// no known sequence is one replaced byte: the '@' after it is shown (a
// review found the fast scanner skipping it while the lenient reader
// decoded it); so are bytes after an 8-bit byte and after a line feed in
// two-byte mode.
func TestHasAtReadsISO2022JPAsTheDecoder(t *testing.T) {
	tests := []struct {
		name, text string
		want       bool
	}{
		{"ESC before @ is no escape", "b\x1b@ext.example", true},
		{"ESC at the end", "b\x1b", false},
		{"ESC $ B: two-byte, ＠ is 0x21 0x77", "\x1b$B!w\x1b(B", true},
		{"ESC $ B: a pair ending in @ is no @", "\x1b$B$@\x1b(B", false},
		{"ESC $ @ is two-byte too", "\x1b$@!w", true},
		{"ESC $ ( D: JIS X 0212, two-byte", "\x1b$(D!w", true},
		{"ESC ( B back to ASCII", "\x1b$B$$\x1b(B@", true},
		{"ESC ( J back to one byte", "\x1b$B$$\x1b(J@", true},
		{"8-bit byte in two-byte mode is one byte", "\x1b$B\x80!w", true},
		{"line feed ends two-byte mode", "\x1b$B$$\n@", true},
		{"unknown ESC keeps two-byte mode", "\x1b$B\x1bZZ!w", true},
		{"unknown ESC is one byte: the pairs go on after it", "\x1b$B\x1bZ!w", false},
	}
	for _, tc := range tests {
		if got := hasAt("ISO-2022-JP", []byte(tc.text)); got != tc.want {
			t.Errorf("%s: hasAt(%q) = %v, want %v", tc.name, tc.text, got, tc.want)
		}
	}
	// And whole fields: the fast scanner leaves the word to the full
	// reader, as the lenient reader's own word finder does.
	v := "=?ISO-2022-JP?Q?b=1B=40ext2.example.org?= <a@ext1.example.com>, c@city.example.jp"
	if _, ok := scanList(v); ok {
		t.Errorf("the fast scanner read %q itself", v)
	}
	if !mayHideInWords(v) {
		t.Errorf("mayHideInWords(%q) = false", v)
	}
}
