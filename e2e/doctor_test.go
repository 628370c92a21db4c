package e2e

import (
	"bytes"
	"errors"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bccguard/bccguard/internal/freeaddr"
	"github.com/bccguard/bccguard/internal/postfixtest"
)

// sendmailNoFrom submits as a script or web application does: sendmail -t
// without -f, so that Postfix gives the envelope sender user@$myorigin.
func sendmailNoFrom(t *testing.T, confDir string, msg []byte) {
	t.Helper()
	cmd := exec.Command("/usr/sbin/sendmail", "-C", confDir, "-i", "-t")
	cmd.Stdin = bytes.NewReader(msg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sendmail: %v: %s", err, out)
	}
}

// doctor runs `bccguard doctor` and returns its output and exit status.
func doctor(t *testing.T, cfg, postfixDir string) (string, int) {
	t.Helper()
	out, err := exec.Command(bccguardBin, "doctor", "--config", cfg, "--postfix-config", postfixDir).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("doctor: %v\n%s", err, out)
	return "", 0
}

// TestDoctorVerdictMatchesDelivery: what doctor says about a live Postfix
// is what happens to local submissions through it. Right wiring: exit 0
// and the mail arrives converted; an unqualified $myorigin or a missing
// non_smtpd_milters: exit 1 with the FAIL line, and the mail does arrive
// with its To list visible.
func TestDoctorVerdictMatchesDelivery(t *testing.T) {
	msg := []byte("From: staff@city.example.jp\r\nTo: a@ext.example, b@other.example\r\nSubject: from a script\r\n\r\nx\r\n")
	for _, tc := range []struct {
		name      string
		extra     map[string]string
		exit      int
		line      string
		converted bool
	}{
		{"right", map[string]string{"myorigin": "city.example.jp", "myhostname": "mx.city.example.jp"}, 0,
			"ok    myorigin: myorigin = city.example.jp is covered (rule internal_domains).", true},
		// The walkthrough's machine: myorigin = $myhostname, a name no
		// rule covers.
		{"unqualified myorigin", map[string]string{"myhostname": "vm"}, 1,
			"FAIL  myorigin: myorigin = vm: sender domain vm is not in internal_domains", false},
		{"no non_smtpd_milters", map[string]string{"myorigin": "city.example.jp", "non_smtpd_milters": ""}, 1,
			"FAIL  non_smtpd_milters: local submission (sendmail, pickup): bccguard", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := postfixtest.StartSink(t)
			addr := freeaddr.Loopback(t)
			cfg := writeConfig(t, "listen: inet:"+addr+"\n"+cityConfig)
			d := startDaemon(t, cfg, addr)
			pf := postfixtest.Start(t, postfixtest.Options{Milter: "inet:" + addr, RelayTo: sink.Addr(), Extra: tc.extra})

			out, exit := doctor(t, cfg, pf.Dir())
			if exit != tc.exit || !strings.Contains(out, tc.line) {
				t.Fatalf("doctor exit %d, want %d with %q:\n%s", exit, tc.exit, tc.line, out)
			}
			if tc.exit == 0 && strings.Contains(out, "FAIL") || tc.exit == 1 && !strings.Contains(out, "doctor: at least one check failed") {
				t.Errorf("verdict and report disagree:\n%s", out)
			}

			sendmailNoFrom(t, pf.Dir(), msg)
			ds := sink.WaitFor(t, 1, 30*time.Second)
			to := fields(header(t, ds[0].Data), "To")
			if converted := len(to) == 1 && to[0] == "undisclosed-recipients:;"; converted != tc.converted {
				t.Fatalf("To %q, converted %v; doctor said exit %d", to, converted, exit)
			}
			if n := len(ds[0].Rcpts); n != 2 {
				t.Errorf("%d recipients on the envelope, want 2", n)
			}
			// The message had no Message-ID; cleanup added one before
			// the milter saw the header, and the audit record has it.
			if tc.name == "right" && !regexp.MustCompile(`message_id=[^<@\s]+ `).MatchString(d.log.String()) {
				t.Errorf("no Message-ID in the audit record:\n%s", d.log)
			}
			if tc.name == "unqualified myorigin" && !strings.Contains(d.log.String(), "level=WARN msg=\"sender domain looks like an unqualified local origin") {
				t.Errorf("no unqualified-origin warning:\n%s", d.log)
			}
		})
	}
}
