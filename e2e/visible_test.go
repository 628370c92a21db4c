package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bccguard/bccguard/internal/freeaddr"
	"github.com/bccguard/bccguard/internal/postfixtest"
	"github.com/bccguard/bccguard/policy"
)

// TestVisibleShapesThroughPostfix sends one header of each shape that a
// mail client shows as two or more addresses, one outside, through
// Postfix (which rewrites header addresses before the milter sees them)
// and bccguard, and checks what is delivered: the field is replaced by
// undisclosed-recipients:;, and every recipient still gets the message.
//
// Postfix rewrites the header addresses of local clients only
// (local_header_rewrite_clients, loopback by default); mail submitted from
// the office network reaches bccguard as the client wrote it. Both are run.
func TestVisibleShapesThroughPostfix(t *testing.T) {
	t.Run("rewritten by Postfix", func(t *testing.T) { visibleShapes(t, nil) })
	t.Run("as the client wrote it", func(t *testing.T) {
		visibleShapes(t, map[string]string{"local_header_rewrite_clients": ""})
	})
}

func visibleShapes(t *testing.T, extra map[string]string) {
	sink := postfixtest.StartSink(t)
	d := startDaemon(t, writeConfig(t, cityConfig), freeaddr.Loopback(t))
	pf := postfixtest.Start(t, postfixtest.Options{
		Milter:        "inet:" + d.addr,
		DefaultAction: "tempfail",
		RelayTo:       sink.Addr(),
		Extra:         extra,
	})
	pcfg := loadPolicy(t, cityConfig)
	cases := []struct{ name, header, hidden string }{
		{"bare-local-parts", "To: alice, bob, c@ext3.example.com\r\n", "To"},
		{"encoded-word", "To: =?UTF-8?Q?b=40ext2.example.org?= <a@city.example.jp>\r\n", "To"},
		{"encoded-word-ISO-2022-JP", "To: =?ISO-2022-JP?B?GyRCOzNFRBsoQiBiQGV4dDIuZXhhbXBsZS5vcmc=?= <a@city.example.jp>\r\n", "To"},
		{"resent-to", "To: staff@city.example.jp\r\nResent-To: a@ext.example, b@other.example\r\n", "Resent-To"},
		{"obsolete-blank-before-at", "To: a@city.example.jp, b @ext2.example.com\r\n", "To"},
		{"obsolete-domain", "To: a@city.example.jp .evil.example.com, b@city.example.jp\r\n", "To"},
		{"shift-jis-names", "To: \"\x95\x5c\" <a@city.example.jp>, \"\x95\x5c\" <b@ext.example>, c@city.example.jp\r\n", "To"},
		{"iso-2022-jp-raw-names", "To: \x1b$B%\"\x1b(B <a@city.example.jp>, \x1b$B%\"\x1b(B <b@ext.example>\r\n", "To"},
		{"ideographic-comma", "To: a@city.example.jp、b@ext.example\r\n", "To"},
		{"look-alike-domain", "To: a@cİty.example.jp, b@city.example.jp\r\n", "To"},
		{"routed-local-part", "To: x%ext.example.com@city.example.jp, b@city.example.jp\r\n", "To"},
		// Review of issue 10: a non-ASCII separator, an 8-bit byte before
		// "@", a full-width "@", an internal suffix joined across a fold,
		// an encoded-word with a language.
		{"no-break-space", "To: a@ext1.example\u00a0b@ext2.example\r\n", "To"},
		{"latin-1-before-at", "To: Jos\xe9@ext1.example, c@city.example.jp\r\n", "To"},
		{"full-width-at", "To: b\uff20ext.example, c\uff20other.example\r\n", "To"},
		{"fold-before-internal-suffix", "To: a@city.example.jp, b@ext.example\r\n .city.example.jp\r\n", "To"},
		{"encoded-word-language", "To: =?UTF-8*ja?Q?b=40ext.example?= <a@city.example.jp>\r\n", "To"},
		// An address cut across adjacent encoded-words over a fold.
		{"encoded-words-cut-across", "To: =?ISO-2022-JP?B?GyRCOzNFRBsoQiBi?=\r\n =?ISO-2022-JP?B?QGV4dDIuZXhhbXBsZS5vcmc=?= <a@city.example.jp>\r\n", "To"},
		{"bare-CR", "To: a@city.example.jp\rb@ext.example\r\nX-Note: x\rTo: a@ext.example, b@other.example\r\n", "To"},
	}
	rcpts := []string{"a@ext.example", "b@other.example"}
	for _, c := range cases {
		msg := "From: staff@city.example.jp\r\n" + c.header + "Subject: shape " + c.name + "\r\n\r\nbody\r\n"
		if err := pf.Send("staff@city.example.jp", rcpts, []byte(msg)); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	ds := sink.WaitFor(t, len(cases), 60*time.Second)
	got := map[string]bool{}
	for _, dl := range ds {
		h := header(t, dl.Data)
		subj := field(h, "Subject")
		// Postfix delivers a bare CR as a space (docs/configuration.md,
		// "What counts as an address"): no client ends a line there.
		if strings.Contains(strings.ReplaceAll(string(dl.Data), "\r\n", ""), "\r") {
			t.Errorf("%s: delivered with a bare CR: %q", subj, dl.Data)
		}
		got[subj] = true
		if len(dl.Rcpts) != 2 {
			t.Errorf("%s: delivered to %q", subj, dl.Rcpts)
		}
		var want string
		for _, c := range cases {
			if "shape "+c.name == subj {
				want = c.hidden
			}
		}
		if vs := fields(h, want); len(vs) != 1 || vs[0] != "undisclosed-recipients:;" {
			t.Errorf("%s: %s delivered as %q", subj, want, vs)
		}
		if again := policy.Decide(pcfg, policy.Message{Sender: "staff@city.example.jp", Header: h}); again.Action == policy.Convert {
			t.Errorf("%s: delivered with addresses visible (%s)", subj, again.Reason)
		}
		if want == "Resent-To" && field(h, "To") != "staff@city.example.jp" {
			t.Errorf("%s: To changed to %q", subj, field(h, "To"))
		}
	}
	for _, c := range cases {
		if !got["shape "+c.name] {
			t.Errorf("%s not delivered", c.name)
		}
	}
}

// TestVisibleResentInterleavedMoveExternal: a redirected message whose To,
// Resent-To, Cc and Resent-Cc fields are interleaved, under move:
// external. Each list is counted apart; in each converted one the outside
// addresses leave and the internal ones stay, the second Resent-To goes,
// Cc and Resent-Cc stay as they are, and every recipient gets one copy.
func TestVisibleResentInterleavedMoveExternal(t *testing.T) {
	cfg := cityConfig + "policy:\n  move: external\n"
	sink, _, pf := setup(t, cfg)
	msg := "From: staff@city.example.jp\r\n" +
		"Resent-To: a@ext.example, r1@city.example.jp\r\n" +
		"To: staff@city.example.jp, b@other.example\r\n" +
		"Cc: kikaku@city.example.jp\r\n" +
		"Resent-To: c@third.example\r\n" +
		"Resent-Cc: d@fourth.example\r\n" +
		"Subject: redirected\r\n\r\nbody\r\n"
	rcpts := []string{"a@ext.example", "b@other.example", "c@third.example", "d@fourth.example"}
	if err := pf.Send("staff@city.example.jp", rcpts, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	ds := sink.WaitFor(t, 1, 60*time.Second)
	got := slices.Sorted(slices.Values(ds[0].Rcpts))
	if strings.Join(got, " ") != strings.Join(rcpts, " ") {
		t.Errorf("delivered to %q, want %q", got, rcpts)
	}
	h := header(t, ds[0].Data)
	for name, want := range map[string]string{
		"To":        "staff@city.example.jp",
		"Resent-To": "r1@city.example.jp",
		"Cc":        "kikaku@city.example.jp",
		"Resent-Cc": "d@fourth.example",
	} {
		if got := field(h, name); got != want {
			t.Errorf("%s delivered as %q, want %q", name, got, want)
		}
	}
	if again := policy.Decide(loadPolicy(t, cfg), policy.Message{Sender: "staff@city.example.jp", Header: h}); again.Action == policy.Convert {
		t.Errorf("delivered with addresses visible (%s)", again.Reason)
	}
}

// TestVisibleOutlookNamePasses: Outlook writes the address again
// as the display name, in single quotes; that shows one address, and the
// message passes unchanged.
func TestVisibleOutlookNamePasses(t *testing.T) {
	sink, _, pf := setup(t, cityConfig)
	to := `"'a@ext.example'" <a@ext.example>`
	msg := "From: staff@city.example.jp\r\nTo: " + to + "\r\nSubject: outlook\r\n\r\nbody\r\n"
	if err := pf.Send("staff@city.example.jp", []string{"a@ext.example"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	h := header(t, sink.WaitFor(t, 1, 60*time.Second)[0].Data)
	if got := field(h, "To"); got != to {
		t.Errorf("To delivered as %q, want %q", got, to)
	}
}
