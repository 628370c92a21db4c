package policy

import (
	"fmt"
	"strings"
	"testing"
)

func collect(fields ...Field) Message {
	var c Collector
	for _, f := range fields {
		c.Add(f.Name, f.Value)
	}
	return c.Message("staff@city.example.jp")
}

// TestCollectorBudgets: To and Cc have budgets of their own, so a large Cc
// (visible on purpose) never keeps To from being read.
func TestCollectorBudgets(t *testing.T) {
	cfg := cityConfig(t, func(s *Settings) { s.OnParseError = ParseErrorAccept })
	bigCc := "x@city.example.jp, " + strings.Repeat("y", 61<<10)
	var fields []Field
	for i := 0; i < 5; i++ {
		fields = append(fields, Field{"Cc", bigCc})
	}
	fields = append(fields, Field{"To", "a@ext.example, b@other.example"}, Field{"X-Other", strings.Repeat("z", 1<<20)})
	d := Decide(cfg, collect(fields...))
	if d.Action != Convert || d.Parse != ParseLenient && d.Parse != ParseOK {
		t.Fatalf("large Cc hid To from the rule: %v %q (%s)", d.Action, d.Parse, d.Reason)
	}
	// With convert_cc the Cc budget does count, and on_parse_error applies.
	cfg = cityConfig(t, func(s *Settings) { s.ConvertCc = true; s.OnParseError = ParseErrorTempfail })
	if d := Decide(cfg, collect(fields...)); d.Action != Tempfail || d.Parse != ParseTooLarge {
		t.Fatalf("convert_cc with an oversized Cc: %v %q", d.Action, d.Parse)
	}
}

func TestCollectorKeepsMemoryBounded(t *testing.T) {
	var c Collector
	for i := 0; i < 100000; i++ {
		c.Add("To", fmt.Sprintf("u%d@ext.example", i))
		c.Add("From", strings.Repeat("f", 100))
		c.Add("Subject", "ignored")
	}
	m := c.Message("staff@city.example.jp")
	if len(m.Header) != MaxAddressFields+1 || !m.Overflow.ToFields {
		t.Fatalf("kept %d fields, overflow %+v", len(m.Header), m.Overflow)
	}
	if d := Decide(cityConfig(t, nil), m); d.Action != Tempfail || d.Parse != ParseTooLarge || len(d.Edits) != 0 {
		t.Fatalf("too many To fields under hide: %v %q, %d edits", d.Action, d.Parse, len(d.Edits))
	}
	c.Reset()
	if m := c.Message(""); len(m.Header) != 0 || m.Overflow != (Overflow{}) {
		t.Fatalf("reset left %+v", m)
	}
}
