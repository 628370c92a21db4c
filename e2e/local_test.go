package e2e

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// sendmail submits a message locally with Postfix's sendmail(1), the way
// web applications and scripts do; it goes through non_smtpd_milters.
func sendmail(t *testing.T, confDir, from string, rcpts []string, msg []byte) {
	t.Helper()
	args := append([]string{"-C", confDir, "-f", from, "-i", "--"}, rcpts...)
	cmd := exec.Command("/usr/sbin/sendmail", args...)
	cmd.Stdin = bytes.NewReader(msg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sendmail: %v: %s", err, out)
	}
}

// TestLocalSubmissionDeferredWhileDown: mail submitted with sendmail(1)
// while bccguard is down waits in Postfix (milter_default_action =
// tempfail), and is delivered converted once bccguard runs again and the
// queue is flushed.
func TestLocalSubmissionDeferredWhileDown(t *testing.T) {
	sink, d, pf := setup(t, cityConfig)
	msg := []byte("From: staff@city.example.jp\r\nTo: a@ext.example, b@other.example\r\nSubject: local while down\r\n\r\nx\r\n")
	rcpts := []string{"a@ext.example", "b@other.example"}

	// First, with bccguard running, local mail is converted too.
	sendmail(t, pf.Dir(), "staff@city.example.jp", rcpts, bytes.Replace(msg, []byte("while down"), []byte("while up"), 1))
	ds := sink.WaitFor(t, 1, 30*time.Second)
	if to := fields(header(t, ds[0].Data), "To"); len(to) != 1 || to[0] != "undisclosed-recipients:;" {
		t.Fatalf("local submission not converted: To %q", to)
	}
	sink.Reset()

	d.stop(t)
	sendmail(t, pf.Dir(), "staff@city.example.jp", rcpts, msg)
	// Postfix tries the milter when pickup hands the message to cleanup;
	// on a loaded machine that may take longer than a fixed sleep.
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(pf.Log(), "milter"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Postfix logged nothing about the milter:\n%s", pf.Log())
		}
	}
	time.Sleep(3 * time.Second) // time for a wrong delivery to show
	if n := len(sink.Deliveries()); n != 0 {
		t.Fatalf("%d delivered while bccguard was down", n)
	}

	startDaemon(t, writeConfig(t, cityConfig), d.addr)
	deadline := time.Now().Add(60 * time.Second)
	for len(sink.Deliveries()) == 0 && time.Now().Before(deadline) {
		pf.Flush(t)
		time.Sleep(time.Second)
	}
	ds = sink.WaitFor(t, 1, 5*time.Second)
	if to := fields(header(t, ds[0].Data), "To"); len(to) != 1 || to[0] != "undisclosed-recipients:;" {
		t.Fatalf("after restart: To %q", to)
	}
	if n := len(ds); n != 1 {
		t.Fatalf("%d deliveries, want 1", n)
	}
}
