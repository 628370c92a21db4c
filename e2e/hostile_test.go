package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bccguard/bccguard/policy"
)

// TestHostileHeadersThroughPostfix sends hostile and broken headers
// through Postfix and bccguard, and checks what is delivered: every
// message arrives, to every recipient, with no external To address visible.
func TestHostileHeadersThroughPostfix(t *testing.T) {
	sink, d, pf := setup(t, cityConfig)
	pcfg := loadPolicy(t, cityConfig)
	many := func(n int, sep string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf("u%d@ext%d.example", i, i%50)
		}
		return strings.Join(parts, sep)
	}
	manyFields := func(n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "To: f%d@ext.example\r\n", i)
		}
		return b.String()
	}
	cases := []struct{ name, header string }{
		{"10000-addresses", "To: " + many(10000, ",\r\n ") + "\r\n"},
		{"1MiB-To", "To: a@ext.example, b@other.example, " + strings.Repeat("x", 1<<20) + "\r\n"},
		{"1000-To-fields", manyFields(1000)},
		{"NUL-bytes", "To: a@ext.example,\x00 b@other.example\r\n"},
		{"bare-CR", "To: a@ext.example,\r b@other.example\r\n"},
		{"invalid-UTF-8", "To: \xff\xfe <a@ext.example>, b@other.example\r\n"},
		{"unterminated-quote", "To: \"Suzuki <a@ext.example>, b@other.example\r\n"},
		{"unterminated-comment", "To: a@ext.example (note, b@other.example\r\n"},
		{"nested-groups", "To: Outer: Inner: a@ext.example;, b@other.example;\r\n"},
		{"unknown-charset", "To: =?x-unknown?B?abc?= <a@ext.example>, b@other.example\r\n"},
		{"no-domain", "To: alice, bob\r\n"},
		{"IP-literal", "To: a@[192.0.2.1], b@[192.0.2.2]\r\n"},
		{"odd-case", "tO: a@ext.example, b@other.example\r\n"},
	}
	rcpts := []string{"a@ext.example", "b@other.example"}
	for _, c := range cases {
		msg := "From: staff@city.example.jp\r\n" + c.header + "Subject: hostile " + c.name + "\r\n\r\nbody\r\n"
		start := time.Now()
		if err := pf.Send("staff@city.example.jp", rcpts, []byte(msg)); err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		t.Logf("%s: accepted in %v", c.name, time.Since(start).Round(time.Millisecond))
	}
	ds := sink.WaitFor(t, len(cases), 60*time.Second)
	got := map[string]bool{}
	for _, dl := range ds {
		h := header(t, dl.Data)
		subj := field(h, "Subject")
		got[subj] = true
		tos := fields(h, "To")
		if len(dl.Rcpts) != 2 {
			t.Errorf("%s: delivered to %q", subj, dl.Rcpts)
		}
		// Delivered, the message must not be one bccguard would still
		// convert: at most one address may be visible in To. (Postfix
		// cuts a header at a NUL byte: "To: a@ext.example," then shows
		// one address, which the rule allows, like To plus Bcc.)
		if again := policy.Decide(pcfg, policy.Message{Sender: "staff@city.example.jp", Header: h}); again.Action == policy.Convert {
			t.Errorf("%s: delivered with To visible (%s): %.200q", subj, again.Reason, tos)
		}
		t.Logf("%s: delivered, %d To field(s): %.60q", subj, len(tos), tos)
	}
	for _, c := range cases {
		if !got["hostile "+c.name] {
			t.Errorf("%s not delivered", c.name)
		}
	}
	t.Logf("bccguard peak memory after the hostile run (race-instrumented build): VmHWM %d KiB", rssKiB(t, d.cmd.Process.Pid))
}
