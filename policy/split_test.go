package policy

import (
	"slices"
	"strings"
	"testing"
)

func splitConfig(t *testing.T, mod func(*Settings)) *Config {
	return cityConfig(t, func(s *Settings) {
		s.Delivery = DeliverySplit
		if mod != nil {
			mod(s)
		}
	})
}

// copyTo returns each copy's first recipient and the To its header shows.
func copyTo(t *testing.T, h []Field, d Decision) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, c := range d.Copies {
		var to []string
		for _, f := range Apply(h, c.Edits) {
			if strings.EqualFold(f.Name, "To") {
				to = append(to, f.Value)
			}
		}
		if len(to) != 1 || to[0] != c.To {
			t.Errorf("copy for %s: To fields %q, want one %q", c.Rcpts[0], to, c.To)
		}
		out[c.Rcpts[0]] = c.To
	}
	return out
}

func TestSplitMoveAll(t *testing.T) {
	h := hdr("From", "staff@city.example.jp",
		"To", `"Tanaka Taro" <Tanaka@Ext.example>, b@other.example, colleague@city.example.jp`,
		"To", "c@third.example",
		"Cc", "cc@ext.example",
		"Subject", "hello")
	rcpts := []string{"tanaka@ext.example", "B@OTHER.example", "colleague@city.example.jp", "c@third.example", "cc@ext.example", "bcc@ext.example", "<b@other.example>"}
	d := Decide(splitConfig(t, nil), Message{Sender: "staff@city.example.jp", Header: h, Recipients: rcpts})
	if d.Action != Convert || d.Delivery != DeliverySplit || len(d.Copies) != 4 {
		t.Fatalf("decision %+v", d)
	}
	got := copyTo(t, h, d)
	want := map[string]string{
		"tanaka@ext.example":        `"Tanaka Taro" <Tanaka@Ext.example>`,
		"B@OTHER.example":           "b@other.example",
		"colleague@city.example.jp": "colleague@city.example.jp",
		"c@third.example":           "c@third.example",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("copy for %s shows To %q, want %q", k, got[k], v)
		}
	}
	// The second spelling of b@other.example leaves the original too.
	if c := d.Copies[1]; !slices.Equal(c.Rcpts, []string{"B@OTHER.example", "b@other.example"}) {
		t.Errorf("copy 1 rcpts %q", c.Rcpts)
	}
	// Everything else is the original's, in order: Cc kept, Subject, and
	// the stamp says split.
	cp := Apply(h, d.Copies[0].Edits)
	var names []string
	for _, f := range cp {
		names = append(names, f.Name)
	}
	if !slices.Equal(names, []string{"From", "To", "Cc", "Subject", "X-BCCGuard"}) {
		t.Errorf("copy fields %q", names)
	}
	if stamp := cp[len(cp)-1].Value; !strings.HasPrefix(stamp, "split;") || !strings.Contains(stamp, "copies=4") {
		t.Errorf("copy stamp %q", stamp)
	}
	orig := Apply(h, d.SplitEdits)
	if orig[1].Value != "undisclosed-recipients:;" || !strings.HasPrefix(orig[len(orig)-1].Value, "split;") {
		t.Errorf("original after split %q", orig)
	}
	if fb := Apply(h, d.Edits); !strings.HasPrefix(fb[len(fb)-1].Value, "converted;") {
		t.Errorf("fallback stamp %q", fb[len(fb)-1].Value)
	}
}

func TestSplitMoveExternalKeepsInternalVisible(t *testing.T) {
	h := hdr("To", "a@ext.example, 山田 <yamada@city.example.jp>, B <b@other.example>")
	d := Decide(splitConfig(t, func(s *Settings) { s.Move = MoveExternal }),
		Message{Sender: "staff@city.example.jp", Header: h, Recipients: []string{"a@ext.example", "yamada@city.example.jp", "b@other.example"}})
	got := copyTo(t, h, d)
	if len(got) != 2 || got["a@ext.example"] != "a@ext.example,\r\n =?utf-8?q?=E5=B1=B1=E7=94=B0?= <yamada@city.example.jp>" ||
		got["b@other.example"] != `"B" <b@other.example>,`+"\r\n =?utf-8?q?=E5=B1=B1=E7=94=B0?= <yamada@city.example.jp>" {
		t.Errorf("copies %q", got)
	}
}

func TestSplitMatchesIDN(t *testing.T) {
	h := hdr("To", "a@xn--wgv71a.example, b@ext.example")
	d := Decide(splitConfig(t, nil), Message{Sender: "staff@city.example.jp", Header: h, Recipients: []string{"A@日本.example", "b@ext.example"}})
	if got := copyTo(t, h, d); got["A@日本.example"] != "a@xn--wgv71a.example" {
		t.Errorf("copies %q", got)
	}
}

func TestSplitWithoutMatchIsHide(t *testing.T) {
	h := hdr("To", "a@ext.example, b@other.example")
	for _, rcpts := range [][]string{nil, {"list@ext.example"}} {
		d := Decide(splitConfig(t, nil), Message{Sender: "staff@city.example.jp", Header: h, Recipients: rcpts})
		if d.Action != Convert || d.Delivery != DeliveryHide || len(d.Copies) != 0 || len(d.Edits) == 0 || !strings.Contains(d.Reason, "so hide") {
			t.Errorf("%q: %+v", rcpts, d)
		}
	}
}

func TestSplitNothingChangesWithoutConversion(t *testing.T) {
	rcpts := []string{"a@ext.example", "b@ext.example"}
	for name, m := range map[string]Message{
		"below threshold": {Sender: "staff@city.example.jp", Header: hdr("To", "a@ext.example"), Recipients: rcpts[:1]},
		"null sender":     {Sender: "", Header: hdr("To", "a@ext.example, b@ext.example"), Recipients: rcpts},
		"internal only":   {Sender: "staff@city.example.jp", Header: hdr("To", "a@city.example.jp, b@city.example.jp"), Recipients: []string{"a@city.example.jp", "b@city.example.jp"}},
	} {
		d := Decide(splitConfig(t, nil), m)
		if d.Action != Pass || d.Delivery != "" || d.Copies != nil {
			t.Errorf("%s: %+v", name, d)
		}
	}
	cfg := splitConfig(t, nil)
	cfg.ExemptSenders = map[string]bool{"robot@city.example.jp": true}
	if d := Decide(cfg, Message{Sender: "robot@city.example.jp", Header: hdr("To", "a@ext.example, b@ext.example"), Recipients: rcpts}); d.Copies != nil {
		t.Errorf("exempt: %+v", d)
	}
}

func TestSplitDryRunCountsCopies(t *testing.T) {
	h := hdr("To", "a@ext.example, b@other.example")
	d := Decide(splitConfig(t, func(s *Settings) { s.DryRun = true }), Message{Sender: "staff@city.example.jp", Header: h, Recipients: []string{"a@ext.example", "b@other.example"}})
	if !d.DryRun || d.Delivery != DeliverySplit || len(d.Copies) != 2 || d.Edits != nil || d.SplitEdits != nil || d.Copies[0].Edits != nil {
		t.Errorf("%+v", d)
	}
}

func TestSplitParseErrorsHide(t *testing.T) {
	// Unreadable To under on_parse_error: hide means hide, not split.
	h := hdr("To", "<@>, <>")
	d := Decide(splitConfig(t, nil), Message{Sender: "staff@city.example.jp", Header: h, Recipients: []string{"a@ext.example"}})
	if d.Action != Convert || d.Delivery != DeliveryHide || d.Copies != nil || !strings.Contains(d.Reason, "not split") {
		t.Errorf("unreadable: %+v", d)
	}
	// A leniently read To splits, showing the bare address only.
	h = hdr("To", "a@ext.example, broken <b@other.example")
	d = Decide(splitConfig(t, func(s *Settings) { s.Move = MoveExternal }), Message{Sender: "staff@city.example.jp", Header: h, Recipients: []string{"a@ext.example", "b@other.example"}})
	if d.Parse != ParseLenient {
		t.Fatalf("parse %q", d.Parse)
	}
	if got := copyTo(t, h, d); got["b@other.example"] != "b@other.example" || got["a@ext.example"] != "a@ext.example" {
		t.Errorf("lenient copies %q", got)
	}
}

func TestSplitPerDomainAndUsesSplit(t *testing.T) {
	cfg := cityConfig(t, nil)
	if cfg.UsesSplit() {
		t.Error("hide-only config uses split")
	}
	p, _ := ParseDomainPattern("kikaku.city.example.jp")
	s := cfg.Default
	s.Delivery = DeliverySplit
	cfg.HasDomains = true
	cfg.Domains = []DomainRule{{Index: 0, Pattern: p, Enabled: false, Settings: s}}
	if cfg.UsesSplit() {
		t.Error("a disabled entry uses split")
	}
	cfg.Domains[0].Enabled = true
	if !cfg.UsesSplit() {
		t.Error("an entry with split does not use split")
	}
	d := Decide(cfg, Message{Sender: "a@kikaku.city.example.jp", Header: hdr("To", "x@ext.example, y@ext.example"), Recipients: []string{"x@ext.example", "y@ext.example"}})
	if d.Delivery != DeliverySplit || len(d.Copies) != 2 {
		t.Errorf("%+v", d)
	}
}

// TestSplitHostileAddressHides: an address that would not read back as
// itself (the fuzzer's "0@[,]") is never shown alone in a copy: hide.
func TestSplitHostileAddressHides(t *testing.T) {
	h := hdr("To", "0@[,], b@ext.example")
	d := Decide(splitConfig(t, nil), Message{Sender: "staff@city.example.jp", Header: h, Recipients: []string{"0@[,]", "b@ext.example"}})
	if d.Action != Convert || d.Delivery != DeliveryHide || d.Copies != nil || !strings.Contains(d.Reason, "does not read back") {
		t.Errorf("%+v", d)
	}
}
