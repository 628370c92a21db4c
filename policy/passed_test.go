package policy

import "testing"

// TestPassReason: every way a message leaves unconverted has its category,
// and converted or refused messages have none.
func TestPassReason(t *testing.T) {
	const staff = "staff@city.example.jp"
	two := hdr("To", "a@ext.example, b@other.example")
	domains := func(enabled bool) *Config {
		return &Config{HasDomains: true, Default: DefaultSettings(), Domains: []DomainRule{
			{Pattern: mustPatterns(t, "city.example.jp")[0], Enabled: enabled, Settings: DefaultSettings()}}}
	}
	tests := []struct {
		name   string
		cfg    *Config
		sender string
		header []Field
		want   PassReason
		action Action
	}{
		{"converted", cityConfig(t, nil), staff, two, NotPassed, Convert},
		{"null sender", cityConfig(t, nil), "", two, PassNullSender, Pass},
		{"exempt", &Config{Default: DefaultSettings(), ExemptSenders: map[string]bool{staff: true}}, staff, two, PassExempt, Pass},
		{"no domain", cityConfig(t, nil), "root", two, PassSenderNotCovered, Pass},
		{"unqualified origin", cityConfig(t, nil), "root@vm", two, PassSenderNotCovered, Pass},
		{"not in domains", domains(true), "a@elsewhere.example", two, PassSenderNotCovered, Pass},
		{"disabled", domains(false), staff, two, PassSenderDisabled, Pass},
		{"internal only", cityConfig(t, nil), staff, hdr("To", "a@city.example.jp, b@city.example.jp"), PassInternalOnly, Pass},
		{"below threshold", cityConfig(t, func(s *Settings) { s.Threshold = 3 }), staff, two, PassBelowThreshold, Pass},
		{"unreadable, accept", cityConfig(t, func(s *Settings) { s.OnParseError = ParseErrorAccept }), staff, hdr("To", "<@>, <>"), PassParseError, Pass},
		{"unreadable, tempfail", cityConfig(t, func(s *Settings) { s.OnParseError = ParseErrorTempfail }), staff, hdr("To", "<@>, <>"), NotPassed, Tempfail},
		{"dry run", cityConfig(t, func(s *Settings) { s.DryRun = true }), staff, two, PassDryRun, Convert},
		{"dry run, unreadable hidden", cityConfig(t, func(s *Settings) { s.DryRun = true }), staff, hdr("To", "<@>, <>"), PassDryRun, Convert},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.cfg, Message{Sender: tt.sender, Header: tt.header})
			if d.Passed != tt.want || d.Action != tt.action {
				t.Fatalf("Passed %q, action %v; want %q, %v (reason: %s)", d.Passed, d.Action, tt.want, tt.action, d.Reason)
			}
		})
	}
}
