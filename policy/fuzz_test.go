package policy

import (
	netmail "net/mail"
	"strings"
	"testing"

	"github.com/emersion/go-message/mail"
)

// seeds are real-world shapes of address fields, and broken ones.
var seeds = []string{
	"a@ext.example",
	"a@ext.example, b@other.example",
	"\"Suzuki, Ichiro\" <a@ext.example>, b@other.example",
	"Team: a@x.example, b@y.example;, c@z.example",
	"undisclosed-recipients:;",
	"(comment) a@b.example (c)",
	"\"john smith\"@ext.example, \"a@b\"@city.example.jp",
	"A@CITY.EXAMPLE.JP",
	"a@例え.jp, b@xn--r8jz45g.jp",
	"山田 太郎 <a@ext.example>",
	"=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?= <a@ext.example>",
	"=?Shift_JIS?B?g2WDWINn?= <b@ext.example>",
	"=?UTF-8?B?44OG44K544OI?= <c@ext.example>",
	"=?unknown?B?abc?= <a@b.example>",
	"=?utf-8?B?!!!broken?= <a@b.example>",
	"a@ext.example, <<broken, b@other.example",
	"user@[192.0.2.1]",
	"a@ext.example,\r\n\tb@other.example",
	"\"unterminated <a@b.example>",
	"(unterminated a@b.example",
	"<a@b.example",
	"Outer: Inner: a@b.example;;",
	"nodomain, other",
	"a@",
	"@b",
	"a\x00b@c.example",
	"\xff\xfe@bad.example",
	"a@b.example\rc@d.example",
	// Obsolete syntax: blanks, folds and comments around "@" and dots.
	"a@ext.example, b @other.example",
	"a (x) . b @ (y) c . example",
	"a@city.example.jp\r\n .evil.example.com",
	// 8-bit names that are not UTF-8, Japanese separators.
	"\"\x95\x5c\" <a@ext.example>, \"\x95\x5c\" <b@other.example>",
	"\x1b$B%\"\x1b(B <a@ext.example>, b@other.example",
	"\x8eR\x93c\x81@\x91\xbe\x98Y <a@ext.example>",
	"a@ext.example、b@other.example，c@third.example\u3000d@x.example",
	"alice, bob <b>, Team: carol;",
	"x%ext.example@city.example.jp, ext.example!y@city.example.jp",
	"=?UTF-8?Q?b=40ext2.example.org?= <a@ext.example>",
	// A long Japanese name folded over adjacent encoded-words (one run).
	"=?ISO-2022-JP?B?GyRCOzNFRBsoQg==?=\r\n =?ISO-2022-JP?B?GyRCQkBPOiRAGyhC?= <a@ext.example>",
}

func init() {
	for _, c := range leakCases {
		seeds = append(seeds, c.to)
	}
}

func FuzzParseAddressField(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		pa := ParseAddressField(v)
		// A failure is never "no addresses": a field the strict parser
		// rejects is either counted leniently or reported as failed.
		if pa.Mode == ParsedStrict && pa.StrictErr != nil {
			t.Fatal("strict mode with an error")
		}
		if pa.Mode != ParsedStrict && pa.StrictErr == nil {
			t.Fatal("fallback without a strict error")
		}
		if pa.Mode == ParseFailed && len(pa.Addrs) != 0 {
			t.Fatal("failed with addresses")
		}
		// Every address a reader sees is counted, whichever path read
		// the field: the strict paths never see less than the lenient
		// reader.
		counted := map[string]bool{}
		for _, a := range pa.Addrs {
			counted[a.key()] = true
		}
		for _, a := range visibleAddresses(unfold(v)) {
			if !counted[a.key()] {
				t.Fatalf("%q is visible in %q but not counted (mode %v)", a.Addr, v, pa.Mode)
			}
		}
	})
}

func FuzzDecide(f *testing.F) {
	for _, s := range seeds {
		f.Add(s, "c@ext.example", uint8(0))
	}
	// move: external, with the Resent lists and convert_cc.
	f.Add("a@city.example.jp, b@ext.example", "c@city.example.jp, d@other.example", uint8(128|16|1))
	f.Add("a@city.example.jp, b@ext.example, c@other.example", "", uint8(128|64))
	f.Fuzz(func(t *testing.T, to, cc string, mode uint8) {
		s := DefaultSettings()
		s.ConvertCc = mode&1 != 0
		if mode&2 != 0 {
			s.Count = CountExternal
		}
		if mode&4 != 0 {
			s.Replacement = Replacement{Kind: ReplaceGroup, Label: "関係者各位"}
		}
		if mode&32 != 0 {
			s.Count = CountDomains
		}
		if mode&128 != 0 {
			s.Move = MoveExternal
		}
		cfg := &Config{Internal: DomainSet{{Domain: "city.example.jp"}, {Domain: "city.example.jp", Subdomains: true}}, Default: s}
		h := []Field{{"From", "staff@city.example.jp"}, {"To", to}, {"Subject", "x"}, {"Cc", cc}}
		if mode&8 != 0 {
			h = append(h, Field{"To", cc})
		}
		if mode&16 != 0 {
			h = append(h, Field{"Resent-To", cc}, Field{"Resent-Cc", to})
		}
		var rcpts []string
		if mode&64 != 0 {
			// delivery: split, with every To address on the envelope and
			// one Bcc recipient.
			cfg.Default.Delivery = DeliverySplit
			for _, a := range ParseAddressField(to).Addrs {
				rcpts = append(rcpts, a.Addr)
			}
			rcpts = append(rcpts, "bcc@ext.example")
		}
		d := Decide(cfg, Message{Sender: "staff@city.example.jp", Header: h, Recipients: rcpts})
		checkCopies(t, cfg, h, d, rcpts)
		for _, e := range d.Edits {
			// Only the visible recipient fields and the stamp change;
			// the envelope is out of the policy's reach by type.
			if !isToName(e.Name) && !isCcName(e.Name) && e.Name != s.StampHeader {
				t.Fatalf("edit of %s", e.Name)
			}
			if strings.ContainsAny(e.Value, "\x00") || strings.Contains(e.Value, "@") && e.Name == s.StampHeader {
				t.Fatalf("bad edit value %q", e.Value)
			}
		}
		if d.Action != Convert {
			return
		}
		out := Apply(h, d.Edits)
		// Each converted list (an edit names its first field) is left
		// with one field that parses again and holds no address
		// (move: all) or only internal ones (move: external), and its Cc
		// goes with convert_cc.
		for _, list := range [][2]string{{"To", "Cc"}, {"Resent-To", "Resent-Cc"}} {
			converted := false
			for _, e := range d.Edits {
				converted = converted || e.Name == list[0]
			}
			if !converted {
				continue
			}
			var vs []string
			for _, f := range out {
				if strings.EqualFold(f.Name, list[0]) {
					vs = append(vs, f.Value)
				}
				if strings.EqualFold(f.Name, list[1]) && s.ConvertCc {
					if s.Move != MoveExternal {
						t.Fatalf("%s left with convert_cc: %q", list[1], f.Value)
					}
					if left := Decide(cfg, Message{Sender: "staff@city.example.jp", Header: []Field{{"To", f.Value}}}); left.ToExternal != 0 {
						t.Fatalf("%s %q keeps an outside address (%s)", list[1], f.Value, left.Reason)
					}
				}
			}
			if len(vs) != 1 {
				t.Fatalf("%d %s fields after conversion", len(vs), list[0])
			}
			pa := ParseAddressField(vs[0])
			if pa.Mode != ParsedStrict || len(pa.Addrs) != 0 && s.Move != MoveExternal {
				t.Fatalf("rewritten %s %q: %+v", list[0], vs[0], pa)
			}
			if left := Decide(cfg, Message{Sender: "staff@city.example.jp", Header: []Field{{list[0], vs[0]}}}); left.ToExternal+left.ResentExternal != 0 {
				t.Fatalf("rewritten %s %q keeps an outside address (%s)", list[0], vs[0], left.Reason)
			}
		}
		// A converted message does not convert again.
		if again := Decide(cfg, Message{Sender: "staff@city.example.jp", Header: out}); again.Action == Convert && again.Moved > 0 {
			t.Fatalf("converted twice: %+v", again)
		}
	})
}

// checkCopies: every copy of a split goes to one envelope recipient, no
// recipient has two copies, the Bcc recipient none, and a copy's header
// differs from the hidden original's only in To, whose addresses are the
// copy's recipient and, under move: external, internal ones.
func checkCopies(t *testing.T, cfg *Config, h []Field, d Decision, rcpts []string) {
	t.Helper()
	if d.Delivery != DeliverySplit {
		if len(d.Copies) != 0 {
			t.Fatalf("%d copies without split", len(d.Copies))
		}
		return
	}
	seen := map[string]int{}
	for i, c := range d.Copies {
		for _, r := range c.Rcpts {
			if j, ok := seen[r]; ok && j != i || r == "bcc@ext.example" {
				t.Fatalf("envelope recipient %q in two copies or a Bcc copy", r)
			}
			seen[r] = i
		}
		own := (&Address{Addr: c.Rcpts[0], Domain: addrDomain(c.Rcpts[0])}).key()
		for _, f := range Apply(h, c.Edits) {
			if !strings.EqualFold(f.Name, "To") {
				continue
			}
			for _, a := range ParseAddressField(f.Value).Addrs {
				if a.key() == own {
					continue
				}
				if d.Settings.Move == MoveExternal {
					// Decided as written (quoted where it must be): a.Addr
					// unquoted may read as more than one address.
					shown := (&netmail.Address{Address: a.Addr}).String()
					if one := Decide(cfg, Message{Sender: "staff@city.example.jp", Header: []Field{{"To", shown}}}); one.ToExternal == 0 {
						continue
					}
				}
				t.Fatalf("the copy for %q shows %q (To %q)", c.Rcpts[0], a.Addr, f.Value)
			}
		}
		original, copied := Apply(h, d.SplitEdits), Apply(h, c.Edits)
		if len(original) != len(copied) {
			t.Fatalf("copy has %d fields, the original %d", len(copied), len(original))
		}
		for i := range original {
			if original[i].Name != copied[i].Name || original[i].Value != copied[i].Value && !strings.EqualFold(original[i].Name, "To") {
				t.Fatalf("copy field %d %q differs from the original's %q", i, copied[i], original[i])
			}
		}
	}
}

// FuzzScanList: whenever the fast scanner accepts a field, the full parser
// (go-message over net/mail) finds the same addr-specs in the same order,
// or fails only on an encoded-word it cannot decode.
func FuzzScanList(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		fast, ok := scanList(v)
		if !ok {
			return
		}
		// The fast path never hides what a reader sees: the lenient
		// reader finds no address it did not.
		if extra := notIn(visibleAddresses(unfold(v)), fast); len(extra) > 0 {
			t.Fatalf("fast scanner accepted %q without %q", v, extra[0].Addr)
		}
		full, err := mail.ParseAddressList(unfold(v))
		if err != nil {
			// net/mail calls a list of empty entries an error; there
			// are no addresses either way.
			if len(fast) == 0 || strings.Contains(v, "=?") {
				return
			}
			t.Fatalf("fast scanner accepted %q, full parser: %v", v, err)
		}
		if len(full) != len(fast) {
			t.Fatalf("%q: fast %d addresses, full %d", v, len(fast), len(full))
		}
		for i := range full {
			if full[i].Address != fast[i].Addr {
				t.Fatalf("%q: address %d fast %q full %q", v, i, fast[i].Addr, full[i].Address)
			}
		}
	})
}
