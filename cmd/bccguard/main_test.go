package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCmd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

const twoExternal = "From: Staff <staff@city.example.jp>\r\n" +
	"To: a@ext.example,\r\n b@other.example\r\n" +
	"Cc: c@ext.example\r\n" +
	"Bcc: hidden@ext.example\r\n" +
	"Subject: test\r\n\r\nbody\r\n"

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "bccguard.yaml")
	if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestCheckJSON(t *testing.T) {
	cfg := writeConfig(t, "internal_domains: [city.example.jp]\n")
	code, out, errOut := runCmd(t, twoExternal, "check", "--config", cfg, "--json", "-")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var r checkResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if r.Action != "convert" || r.ToTotal != 2 || r.ToExternal != 2 || r.Moved != 2 || r.DryRun || r.Reason == "" {
		t.Fatalf("result = %+v", r)
	}
	if r.Sender != "staff@city.example.jp" || len(r.Recipients) != 4 {
		t.Fatalf("envelope defaults: sender=%q rcpts=%q", r.Sender, r.Recipients)
	}
	for _, want := range []string{"\r\nTo: undisclosed-recipients:;\r\n", "\r\nCc: c@ext.example\r\n", "X-BCCGuard: converted"} {
		if !strings.Contains(r.Headers, want) {
			t.Errorf("headers lack %q:\n%s", want, r.Headers)
		}
	}
	for _, leak := range []string{"a@ext.example", "b@other.example", "hidden@ext.example"} {
		if strings.Contains(r.Headers, leak) {
			t.Errorf("headers still show %s:\n%s", leak, r.Headers)
		}
	}
}

func TestCheckTextAndEnvelopeFlags(t *testing.T) {
	f := filepath.Join(t.TempDir(), "m.eml")
	if err := os.WriteFile(f, []byte(twoExternal), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, "internal_domains: [city.example.jp]\n")
	// An outside envelope sender is not checked: inbound mail passes.
	code, out, _ := runCmd(t, "", "check", "-c", cfg, "--from", "someone@ext.example", "--rcpt", "x@city.example.jp", f)
	if code != 0 || !strings.Contains(out, "action:     pass") || !strings.Contains(out, "To: a@ext.example,") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	// The null sender of a bounce passes too.
	code, out, _ = runCmd(t, "", "check", "-c", cfg, "--from", "", f)
	if code != 0 || !strings.Contains(out, "null sender") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestExitCodes(t *testing.T) {
	bad := writeConfig(t, "policy:\n  threshold: 0\n  move: sideways\n")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"check", "--bogus"}, 2, "unknown flag"},
		{[]string{"check", "a.eml", "b.eml"}, 2, "accepts at most 1 arg"},
		{[]string{}, 2, "a command is required"},
		{[]string{"check", "/nonexistent/m.eml"}, 1, "no such file"},
		{[]string{"check", "-c", bad, "-"}, 1, "policy.threshold"},
		{[]string{"config", "check", "-c", bad}, 1, "policy.move"},
		{[]string{"serve", "-c", bad}, 1, "policy.threshold"},
		{[]string{"serve", "--listen", "nonsense"}, 2, "--listen"},
		{[]string{"version"}, 0, ""},
	} {
		code, out, errOut := runCmd(t, twoExternal, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stderr %q (stdout %q); want %d and %q", tc.args, code, errOut, out, tc.code, tc.want)
		}
	}
}

func TestConfigCheckPrintsEffectiveConfig(t *testing.T) {
	cfg := writeConfig(t, "internal_domains: [city.example.jp]\ndomains:\n  - domain: city.example.jp\n    threshold: 3\n")
	code, out, errOut := runCmd(t, "", "config", "check", "-c", cfg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"OK", "threshold: 3", "threshold: 2", "stamp_header: X-BCCGuard", "listen: inet:127.0.0.1:10030"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestServeRefusesRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the refusal is only reachable as root (CI runs as root)")
	}
	code, _, errOut := runCmd(t, "", "serve", "--listen", "inet:127.0.0.1:1")
	if code != 1 || !strings.Contains(errOut, "refusing to run as root") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

func TestAuditHash(t *testing.T) {
	cfg := writeConfig(t, "audit:\n  recipients: hash\n  hash_key: 0123456789abcdef\n")
	code, out, errOut := runCmd(t, "", "audit-hash", "-c", cfg, "Alice@Ext.example")
	code2, out2, _ := runCmd(t, "", "audit-hash", "-c", cfg, "alice@ext.example")
	if code != 0 || code2 != 0 || !strings.HasPrefix(out, "hmac:") || strings.Fields(out)[0] != strings.Fields(out2)[0] {
		t.Fatalf("exit %d %q %q %s", code, out, out2, errOut)
	}
	if code, _, errOut := runCmd(t, "", "audit-hash", "x@y.example"); code != 1 || !strings.Contains(errOut, "not hash") {
		t.Fatalf("without hash mode: %d %s", code, errOut)
	}
}

func TestCheckShowsCopies(t *testing.T) {
	dir := t.TempDir()
	splitConfig := "internal_domains: [city.example.jp]\nreinject:\n  address: inet:127.0.0.1:10026\n" +
		"policy:\n  delivery: split\nsplit:\n  state_dir: " + dir + "\n"
	cfg := writeConfig(t, splitConfig)
	// The daemon splits only a message with its own Message-ID.
	withID := "Message-ID: <1@city.example.jp>\r\n" + twoExternal
	code, out, errOut := runCmd(t, withID, "check", "--config", cfg, "--json", "-")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var r checkResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if r.Delivery != "split" || r.Copies != 2 || !strings.Contains(r.Headers, "X-BCCGuard: split;") {
		t.Fatalf("result = %+v", r)
	}
	code, out, _ = runCmd(t, withID, "check", "--config", cfg, "-")
	for _, want := range []string{"split into 2 copies", "  a@ext.example  To: a@ext.example\n", "  b@other.example  To: b@other.example\n",
		"the original below goes to 2: c@ext.example, hidden@ext.example"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("exit %d, output lacks %q:\n%s", code, want, out)
		}
	}
	// What the daemon checks before it splits (split.Feasible): where
	// it would hide, check says so, and its JSON is the daemon's audit
	// (delivery hide, no copies, the fallback reason).
	// The exact size the daemon counts: each field "Name: value\r\n",
	// the body with CRLF line endings, here given with LF.
	lf := strings.ReplaceAll(withID, "\r\n", "\n") + strings.Repeat("0123456789\n", 100)
	size := int64(len(lf) + strings.Count(lf, "\n") - 2) // CR added to each line but the empty one
	for _, c := range []struct {
		name, msg, config, reason string
	}{
		{"max_recipients", withID, "  max_recipients: 1\n", "max_recipients (2 copies, split.max_recipients is 1)"},
		// The case reported: over max_recipients and no Message-ID.
		{"max_recipients before message_id", twoExternal, "  max_recipients: 1\n", "max_recipients (2 copies, split.max_recipients is 1)"},
		{"max_message_bytes", lf, fmt.Sprintf("  max_message_bytes: %d\n", size-1), "max_message_bytes (over split.max_message_bytes"},
		{"no Message-ID", twoExternal, "", "message_id (no Message-ID of the sender's own"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := writeConfig(t, splitConfig+c.config)
			code, out, errOut := runCmd(t, c.msg, "check", "--config", cfg, "-")
			want := "delivery:   the rule says split; would hide instead: " + c.reason
			if code != 0 || !strings.Contains(out, want) || strings.Contains(out, "delivery:   split into") || strings.Contains(out, "discarded") ||
				!strings.Contains(out, "recipients: 4 on the envelope, unchanged") || !strings.Contains(out, "To: undisclosed-recipients:;") {
				t.Errorf("exit %d, want %q:\n%s%s", code, want, out, errOut)
			}
			_, out, _ = runCmd(t, c.msg, "check", "--config", cfg, "--json", "-")
			var r checkResult
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if r.Delivery != "hide" || r.Copies != 0 || r.SplitFallback != strings.Fields(c.reason)[0] || strings.Contains(r.Headers, "X-BCCGuard: split") {
				t.Errorf("JSON %+v", r)
			}
		})
	}
	// At the limit exactly: split.
	cfg = writeConfig(t, splitConfig+fmt.Sprintf("  max_message_bytes: %d\n", size))
	if _, out, _ = runCmd(t, lf, "check", "--config", cfg, "-"); !strings.Contains(out, "split into 2 copies") {
		t.Errorf("at max_message_bytes:\n%s", out)
	}

	// hide: the JSON says so, with no copies.
	cfg = writeConfig(t, "internal_domains: [city.example.jp]\n")
	_, out, _ = runCmd(t, twoExternal, "check", "--config", cfg, "--json", "-")
	if !strings.Contains(out, `"delivery": "hide"`) || !strings.Contains(out, `"copies": 0`) {
		t.Errorf("hide JSON:\n%s", out)
	}
}

// TestCheckReadsReturnPath: a delivered copy's Return-Path is the envelope
// sender the daemon saw. A script's mail (From staff, envelope root@vm)
// passed unchecked; check must say so, not convert it on From's word.
func TestCheckReadsReturnPath(t *testing.T) {
	cfg := writeConfig(t, "internal_domains: [city.example.jp]\n")
	delivered := "Return-Path: <root@vm>\r\n" + twoExternal
	code, out, _ := runCmd(t, delivered, "check", "-c", cfg, "-")
	if code != 0 || !strings.Contains(out, "action:     pass") ||
		!strings.Contains(out, "sender:     root@vm (from Return-Path; rule: none)") ||
		!strings.Contains(out, "sender domain vm is not in internal_domains") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	// --from wins over Return-Path.
	code, out, _ = runCmd(t, delivered, "check", "-c", cfg, "--from", "staff@city.example.jp", "-")
	if code != 0 || !strings.Contains(out, "action:     convert") || !strings.Contains(out, "(from --from; rule: internal_domains)") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	// A bounce's copy: Return-Path <>.
	code, out, _ = runCmd(t, "Return-Path: <>\r\n"+twoExternal, "check", "-c", cfg, "--json", "-")
	var r checkResult
	if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil || r.Sender != "" || r.SenderSource != "Return-Path" || r.Action != "pass" {
		t.Fatalf("exit %d, %v: %+v", code, err, r)
	}
	// The null sender with a comment, blanks inside the brackets, or
	// folded: still the null sender, never ">  (bounce)".
	for _, rp := range []string{"<>  (bounce)", "< >", "<\r\n >", "(mailer-daemon) <> (x)"} {
		code, out, _ = runCmd(t, "Return-Path: "+rp+"\r\n"+twoExternal, "check", "-c", cfg, "--json", "-")
		var r checkResult
		if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil || r.Sender != "" || r.SenderSource != "Return-Path" || r.Action != "pass" {
			t.Fatalf("Return-Path %q: exit %d, %v: %+v", rp, code, err, r)
		}
	}
	// A folded address with a comment.
	code, out, _ = runCmd(t, "Return-Path:\r\n <root@vm> (local)\r\n"+twoExternal, "check", "-c", cfg, "-")
	if code != 0 || !strings.Contains(out, "sender:     root@vm (from Return-Path") {
		t.Fatalf("folded: exit %d:\n%s", code, out)
	}
	// Several fields (a message delivered, forwarded, delivered again):
	// the first is the newest.
	code, out, _ = runCmd(t, "Return-Path: <root@vm>\r\nReturn-Path: <staff@city.example.jp>\r\n"+twoExternal, "check", "-c", cfg, "-")
	if code != 0 || !strings.Contains(out, "sender:     root@vm (from Return-Path") {
		t.Fatalf("two fields: exit %d:\n%s", code, out)
	}
	// Without either, From is used, and the output says so.
	code, out, _ = runCmd(t, twoExternal, "check", "-c", cfg, "-")
	if code != 0 || !strings.Contains(out, "(from the From field, not the envelope: see --from; rule: internal_domains)") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestDoctorUnreadablePostfix(t *testing.T) {
	cfg := writeConfig(t, "internal_domains: [city.example.jp]\n")
	code, _, errOut := runCmd(t, "", "doctor", "--config", cfg, "--postfix-config", t.TempDir())
	if code != 1 || !strings.Contains(errOut, "doctor: read Postfix configuration: postconf -c") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}
