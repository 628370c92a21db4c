package policy

import (
	"strings"
	"testing"
)

func domainsConfig(t *testing.T) *Config {
	t.Helper()
	def := DefaultSettings()
	board := def
	board.Threshold = 3
	rule := func(i int, p string, enabled bool, s Settings) DomainRule {
		return DomainRule{Index: i, Pattern: mustPatterns(t, p)[0], Enabled: enabled, Settings: s}
	}
	return &Config{
		Internal:   mustPatterns(t, "city.example.jp", ".city.example.jp"),
		HasDomains: true,
		Default:    def,
		Domains: []DomainRule{
			rule(0, "city.example.jp", true, def),
			rule(1, ".city.example.jp", true, def),
			rule(2, "board.city.example.jp", true, board),
			rule(3, "hosted.example.org", false, def),
		},
		ExemptSenders: map[string]bool{"mailer@city.example.jp": true},
	}
}

func TestSenderRules(t *testing.T) {
	cfg := domainsConfig(t)
	to := hdr("To", "a@ext.example, b@ext.example")
	tests := []struct {
		sender string
		action Action
		rule   string
	}{
		{"staff@city.example.jp", Convert, "domains[0] city.example.jp"},
		{"staff@kikaku.city.example.jp", Convert, "domains[1] .city.example.jp"},
		// The most specific entry wins: the board needs 3 addresses.
		{"staff@board.city.example.jp", Pass, "domains[2] board.city.example.jp"},
		{"STAFF@Board.City.Example.JP", Pass, "domains[2] board.city.example.jp"},
		{"staff@hosted.example.org", Pass, ""},
		{"staff@example.jp", Pass, ""},
		{"mailer@city.example.jp", Pass, ""},
		{"<>", Pass, ""},
		{"nodomain", Pass, ""},
	}
	for _, tc := range tests {
		d := Decide(cfg, Message{Sender: tc.sender, Header: to})
		if d.Action != tc.action || d.Rule != tc.rule {
			t.Errorf("%s: action %v rule %q (%s); want %v %q", tc.sender, d.Action, d.Rule, d.Reason, tc.action, tc.rule)
		}
	}
}

func TestNoDomainsUsesInternal(t *testing.T) {
	cfg := cityConfig(t, nil)
	to := hdr("To", "a@ext.example, b@ext.example")
	if d := Decide(cfg, Message{Sender: "x@city.example.jp", Header: to}); d.Action != Convert || d.Rule != "internal_domains" {
		t.Fatalf("internal sender: %+v", d)
	}
	if d := Decide(cfg, Message{Sender: "x@ext.example", Header: to}); d.Action != Pass {
		t.Fatalf("inbound mail was changed: %+v", d)
	}
	// Neither key: every sender is checked and every recipient external.
	all := &Config{Default: DefaultSettings()}
	if d := Decide(all, Message{Sender: "x@anything.example", Header: hdr("To", "a@city.example.jp, b@city.example.jp")}); d.Action != Convert || d.ToExternal != 2 {
		t.Fatalf("default config: %+v", d)
	}
}

func TestConvertCc(t *testing.T) {
	on := func(s *Settings) { s.ConvertCc = true }
	tests := []struct {
		name   string
		mod    func(*Settings)
		header []Field
		action Action
		wantTo []string
		wantCc []string
	}{
		{"To and Cc count together", on, hdr("To", "a@ext.example", "Cc", "b@ext.example"),
			Convert, []string{"undisclosed-recipients:;"}, nil},
		{"Cc alone triggers", on, hdr("Cc", "a@ext.example, b@ext.example"),
			Convert, []string{"undisclosed-recipients:;"}, nil},
		{"move external keeps internal Cc", func(s *Settings) { s.ConvertCc = true; s.Move = MoveExternal },
			hdr("To", "a@ext.example", "Cc", "b@city.example.jp, c@ext.example", "Cc", "d@ext.example"),
			Convert, []string{"undisclosed-recipients:;"}, []string{"b@city.example.jp"}},
		{"off by default", nil, hdr("To", "a@ext.example", "Cc", "b@ext.example"),
			Pass, []string{"a@ext.example"}, []string{"b@ext.example"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(cityConfig(t, tc.mod), Message{Sender: "s@city.example.jp", Header: tc.header})
			if d.Action != tc.action {
				t.Fatalf("action %v (%s)", d.Action, d.Reason)
			}
			out := Apply(tc.header, d.Edits)
			var to, cc []string
			for _, f := range out {
				switch f.Name {
				case "To":
					to = append(to, f.Value)
				case "Cc":
					cc = append(cc, f.Value)
				}
			}
			if len(to) != len(tc.wantTo) || len(cc) != len(tc.wantCc) {
				t.Fatalf("To %q Cc %q; want %q %q", to, cc, tc.wantTo, tc.wantCc)
			}
			for i := range to {
				if to[i] != tc.wantTo[i] {
					t.Fatalf("To %q want %q", to, tc.wantTo)
				}
			}
			for i := range cc {
				if cc[i] != tc.wantCc[i] {
					t.Fatalf("Cc %q want %q", cc, tc.wantCc)
				}
			}
		})
	}
}

func TestReplacementValues(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"undisclosed", "undisclosed-recipients:;"},
		{"group:Partners", "Partners:;"},
		{"group:Partners, Inc.", `"Partners, Inc.":;`},
		{"group:関係者各位", "=?utf-8?b?6Zai5L+C6ICF5ZCE5L2N?=:;"},
	} {
		r, err := ParseReplacement(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		v := (&visible{}).replacementValue(r)
		if v != tc.want {
			t.Errorf("%s: %q, want %q", tc.in, v, tc.want)
		}
		// The value must read back as an empty group, not as addresses.
		if pa := ParseAddressField(v); pa.Mode != ParsedStrict || len(pa.Addrs) != 0 {
			t.Errorf("%s: %q does not parse as an empty group: %+v", tc.in, v, pa)
		}
	}
	for _, bad := range []string{"", "group:", "nobody", "group:a\r\nBcc: x@y"} {
		if _, err := ParseReplacement(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestDomainPatterns(t *testing.T) {
	exact, sub := mustPatterns(t, "city.example.jp")[0], mustPatterns(t, ".city.example.jp")[0]
	for _, tc := range []struct {
		domain     string
		exact, sub bool
	}{
		{"city.example.jp", true, false},
		{"kikaku.city.example.jp", false, true},
		{"a.b.city.example.jp", false, true},
		{"xcity.example.jp", false, false},
		{"example.jp", false, false},
		{"city.example.jp.evil.example", false, false},
	} {
		if exact.Match(tc.domain) != tc.exact || sub.Match(tc.domain) != tc.sub {
			t.Errorf("%s: exact %v sub %v", tc.domain, exact.Match(tc.domain), sub.Match(tc.domain))
		}
	}
	if _, err := ParseDomainPattern("bad domain"); err == nil {
		t.Error("space accepted")
	}
	if p, err := ParseDomainPattern(".例え.JP."); err != nil || p.String() != ".xn--r8jz45g.jp" {
		t.Errorf("IDN pattern: %v %v", p, err)
	}
}

func TestDomainPatternsRejected(t *testing.T) {
	for _, bad := range []string{"*.city.example.jp", "city..example.jp", "-bad-.jp", "[10.0.0.1", "a b.jp", "a@b.jp", "", "."} {
		if p, err := ParseDomainPattern(bad); err == nil {
			t.Errorf("%q accepted as %v", bad, p)
		}
	}
	if _, err := ParseDomainPattern("*.city.example.jp"); err == nil || !strings.Contains(err.Error(), ".city.example.jp") {
		t.Errorf("wildcard hint: %v", err)
	}
}
