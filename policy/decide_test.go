package policy

import (
	"strings"
	"testing"
)

func mustPatterns(t *testing.T, ps ...string) DomainSet {
	t.Helper()
	var s DomainSet
	for _, p := range ps {
		dp, err := ParseDomainPattern(p)
		if err != nil {
			t.Fatal(err)
		}
		s = append(s, dp)
	}
	return s
}

// cityConfig is the seed document's city hall: its own domain and every
// subdomain are internal, and its staff send from both.
func cityConfig(t *testing.T, mod func(*Settings)) *Config {
	s := DefaultSettings()
	if mod != nil {
		mod(&s)
	}
	return &Config{Internal: mustPatterns(t, "city.example.jp", ".city.example.jp"), Default: s}
}

func hdr(kv ...string) []Field {
	var h []Field
	for i := 0; i+1 < len(kv); i += 2 {
		h = append(h, Field{Name: kv[i], Value: kv[i+1]})
	}
	return h
}

func TestDecide(t *testing.T) {
	const staff = "staff@city.example.jp"
	tests := []struct {
		name     string
		mod      func(*Settings)
		sender   string
		header   []Field
		action   Action
		total    int
		external int
		moved    int
		wantTo   string // expected single To value after edits; "" = unchanged
		parse    ParseProblem
	}{
		{name: "two external", sender: staff,
			header: hdr("From", staff, "To", "a@ext.example, b@other.example"),
			action: Convert, total: 2, external: 2, moved: 2, wantTo: "undisclosed-recipients:;"},
		{name: "one external alone", sender: staff,
			header: hdr("To", "a@ext.example"), action: Pass, total: 1, external: 1},
		{name: "internal only, many", sender: staff,
			header: hdr("To", "a@city.example.jp, b@city.example.jp, c@kikaku.city.example.jp"),
			action: Pass, total: 3, external: 0},
		{name: "internal mixed with one external", sender: staff,
			header: hdr("To", "a@city.example.jp, b@ext.example"),
			action: Convert, total: 2, external: 1, moved: 2, wantTo: "undisclosed-recipients:;"},
		{name: "other municipality is external", sender: staff,
			header: hdr("To", "a@city.example.jp, b@town.example.lg.jp"),
			action: Convert, total: 2, external: 1, moved: 2, wantTo: "undisclosed-recipients:;"},
		{name: "parent suffix is external", sender: staff,
			header: hdr("To", "a@city.example.jp, b@example.jp"),
			action: Convert, total: 2, external: 1, moved: 2, wantTo: "undisclosed-recipients:;"},
		{name: "cc stays visible", sender: staff,
			header: hdr("To", "a@ext.example", "Cc", "b@ext.example, c@ext.example"),
			action: Pass, total: 1, external: 1},
		{name: "duplicates count once", sender: staff,
			header: hdr("To", "a@ext.example, A@EXT.example"),
			action: Pass, total: 1, external: 1},
		{name: "several To fields", sender: staff,
			header: hdr("To", "a@ext.example", "Subject", "x", "To", "b@ext.example"),
			action: Convert, total: 2, external: 2, moved: 2, wantTo: "undisclosed-recipients:;"},
		{name: "group syntax", sender: staff,
			header: hdr("To", "Team: a@x.example, b@y.example;"),
			action: Convert, total: 2, external: 2, moved: 2, wantTo: "undisclosed-recipients:;"},
		{name: "already undisclosed", sender: staff,
			header: hdr("To", "undisclosed-recipients:;"), action: Pass},
		{name: "folded and commented", sender: staff,
			header: hdr("To", "\"Suzuki, Ichiro\" <a@ext.example>,\r\n\t(note) b@ext.example (x)"),
			action: Convert, total: 2, external: 2, moved: 2, wantTo: "undisclosed-recipients:;", parse: ParseLenient},
		{name: "quoted local parts", sender: staff,
			header: hdr("To", "\"john smith\"@ext.example, \"a@b\"@city.example.jp"),
			action: Convert, total: 2, external: 1, moved: 2, wantTo: "undisclosed-recipients:;"},
		{name: "upper-case internal domain", sender: staff,
			header: hdr("To", "a@CITY.Example.JP, b@Kikaku.City.Example.JP"),
			action: Pass, total: 2, external: 0},
		{name: "IDN U-label and A-label are one domain", sender: staff,
			mod:    nil,
			header: hdr("To", "a@例え.jp, A@XN--R8JZ45G.JP"),
			action: Pass, total: 1, external: 1},
		{name: "raw UTF-8 display names", sender: staff,
			header: hdr("To", "山田 太郎 <a@ext.example>, 佐藤 <b@city.example.jp>"),
			action: Convert, total: 2, external: 1, moved: 2, wantTo: "undisclosed-recipients:;"},
		{name: "ISO-2022-JP, Shift_JIS and UTF-8 encoded names", sender: staff,
			header: hdr("To", "=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?= <a@ext.example>, =?Shift_JIS?B?g2WDWINn?= <b@ext.example>, =?UTF-8?B?44OG44K544OI?= <c@ext.example>"),
			action: Convert, total: 3, external: 3, moved: 3, wantTo: "undisclosed-recipients:;"},
		{name: "broken entry falls back to lenient count", sender: staff,
			header: hdr("To", "a@ext.example, <<broken, b@ext.example"),
			action: Convert, total: 2, external: 2, moved: 2, wantTo: "undisclosed-recipients:;", parse: ParseLenient},
		{name: "unreadable To is hidden by default", sender: staff,
			header: hdr("To", "<@>, <>"),
			action: Convert, wantTo: "undisclosed-recipients:;", parse: ParseUnreadable},
		{name: "unreadable To with tempfail", sender: staff,
			mod:    func(s *Settings) { s.OnParseError = ParseErrorTempfail },
			header: hdr("To", "<@>, <>"), action: Tempfail, parse: ParseUnreadable},
		{name: "unreadable To with accept", sender: staff,
			mod:    func(s *Settings) { s.OnParseError = ParseErrorAccept },
			header: hdr("To", "<@>, <>"), action: Pass, parse: ParseUnreadable},
		{name: "null sender passes", sender: "",
			header: hdr("To", "a@ext.example, b@ext.example"), action: Pass},
		{name: "outside sender passes", sender: "someone@ext.example",
			header: hdr("To", "a@ext.example, b@ext.example"), action: Pass},
		{name: "threshold 3", sender: staff,
			mod:    func(s *Settings) { s.Threshold = 3 },
			header: hdr("To", "a@ext.example, b@ext.example"), action: Pass, total: 2, external: 2},
		{name: "count external ignores internal", sender: staff,
			mod:    func(s *Settings) { s.Count = CountExternal },
			header: hdr("To", "a@city.example.jp, b@ext.example"), action: Pass, total: 2, external: 1},
		{name: "move external keeps internal", sender: staff,
			mod:    func(s *Settings) { s.Move = MoveExternal },
			header: hdr("To", "Yamada <a@city.example.jp>, b@ext.example, c@ext.example"),
			action: Convert, total: 3, external: 2, moved: 2, wantTo: "\"Yamada\" <a@city.example.jp>"},
		{name: "move external with no internal left", sender: staff,
			mod:    func(s *Settings) { s.Move = MoveExternal },
			header: hdr("To", "b@ext.example, c@ext.example"),
			action: Convert, total: 2, external: 2, moved: 2, wantTo: "undisclosed-recipients:;"},
		{name: "replacement group", sender: staff,
			mod:    func(s *Settings) { s.Replacement = Replacement{Kind: ReplaceGroup, Label: "関係者各位"} },
			header: hdr("To", "b@ext.example, c@ext.example"),
			action: Convert, total: 2, external: 2, moved: 2, wantTo: "=?utf-8?b?6Zai5L+C6ICF5ZCE5L2N?=:;"},
		{name: "replacement sender", sender: staff,
			mod:    func(s *Settings) { s.Replacement = Replacement{Kind: ReplaceSender} },
			header: hdr("From", "Kikaku <kikaku@city.example.jp>", "To", "b@ext.example, c@ext.example"),
			action: Convert, total: 2, external: 2, moved: 2, wantTo: "\"Kikaku\" <kikaku@city.example.jp>"},
		{name: "dry run changes nothing", sender: staff,
			mod:    func(s *Settings) { s.DryRun = true },
			header: hdr("To", "b@ext.example, c@ext.example"),
			action: Convert, total: 2, external: 2, moved: 2},
		{name: "odd case field name", sender: staff,
			header: hdr("tO", "b@ext.example, c@ext.example"),
			action: Convert, total: 2, external: 2, moved: 2, wantTo: "undisclosed-recipients:;"},
		{name: "IP literal is external", sender: staff,
			header: hdr("To", "a@city.example.jp, b@[192.0.2.1]"),
			action: Convert, total: 2, external: 1, moved: 2, wantTo: "undisclosed-recipients:;"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := cityConfig(t, tc.mod)
			d := Decide(cfg, Message{Sender: tc.sender, Header: tc.header})
			if d.Action != tc.action || d.ToTotal != tc.total || d.ToExternal != tc.external || d.Moved != tc.moved || d.Parse != tc.parse {
				t.Fatalf("got action=%v total=%d external=%d moved=%d parse=%q (%s); want %v %d %d %d %q",
					d.Action, d.ToTotal, d.ToExternal, d.Moved, d.Parse, d.Reason, tc.action, tc.total, tc.external, tc.moved, tc.parse)
			}
			out := Apply(tc.header, d.Edits)
			var tos []string
			for _, f := range out {
				if strings.EqualFold(f.Name, "To") {
					tos = append(tos, f.Value)
				}
			}
			if tc.wantTo == "" {
				if FormatHeader(out) != FormatHeader(tc.header) {
					t.Fatalf("header changed:\n%s", FormatHeader(out))
				}
				return
			}
			if len(tos) != 1 || tos[0] != tc.wantTo {
				t.Fatalf("To fields after edits = %q, want [%q]", tos, tc.wantTo)
			}
			if d.Settings.StampHeader != "" && !d.DryRun {
				last := out[len(out)-1]
				if last.Name != "X-BCCGuard" || strings.Contains(last.Value, "@") {
					t.Fatalf("stamp header = %+v", last)
				}
			}
		})
	}
}

func TestReadHeaderQuirks(t *testing.T) {
	in := "From someone@example.jp Thu Nov 26 00:00:00 2026\r\nTo : a@ext.example,\r\n b@other.example\r\nSubject: x\r\n\r\nbody"
	h, err := ReadHeader(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 2 || h[0].Name != "To" || h[0].Value != "a@ext.example,\r\n b@other.example" {
		t.Fatalf("%q", h)
	}
	if _, err := ReadHeader(strings.NewReader("no colon here\r\n")); err == nil {
		t.Fatal("garbage accepted")
	}
}
