package postfixtest_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/bccguard/bccguard/internal/postfixtest"
)

const deliveryTimeout = 20 * time.Second

func testMessage(subject string) []byte {
	return []byte("From: Alice <alice@example.com>\r\n" +
		"To: Bob <bob@example.org>\r\n" +
		"Subject: " + subject + "\r\n" +
		"Message-ID: <" + strings.ReplaceAll(subject, " ", "-") + "@example.com>\r\n" +
		"\r\n" +
		"Hello Bob,\r\n" +
		".leading dot must survive dot-stuffing\r\n" +
		"Gr\xc3\xbc\xc3\x9fe\r\n")
}

// body returns what follows the header section.
func body(t *testing.T, data []byte) []byte {
	t.Helper()
	_, b, ok := bytes.Cut(data, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("message has no header/body separator:\n%s", data)
	}
	return b
}

func TestSinkRecordsTransactions(t *testing.T) {
	sink := postfixtest.StartSink(t)
	msg := testMessage("direct")
	c, err := smtp.Dial(sink.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendMail("a@example.com", []string{"b@example.org", "c@example.org"}, bytes.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("", []string{"d@example.org"}, bytes.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}

	got := sink.WaitFor(t, 2, deliveryTimeout)
	if len(got) != 2 {
		t.Fatalf("got %d deliveries, want 2", len(got))
	}
	if got[0].From != "a@example.com" || !slices.Equal(got[0].Rcpts, []string{"b@example.org", "c@example.org"}) {
		t.Errorf("first envelope = <%s> %v", got[0].From, got[0].Rcpts)
	}
	if got[1].From != "" || !slices.Equal(got[1].Rcpts, []string{"d@example.org"}) {
		t.Errorf("second envelope = <%s> %v", got[1].From, got[1].Rcpts)
	}
	if !bytes.Equal(got[0].Data, msg) {
		t.Errorf("data = %q, want %q", got[0].Data, msg)
	}

	// Deliveries returns copies.
	got[0].Rcpts[0] = "changed"
	if sink.Deliveries()[0].Rcpts[0] != "b@example.org" {
		t.Error("modifying the result of WaitFor changed the sink's record")
	}
	sink.Reset()
	if n := len(sink.Deliveries()); n != 0 {
		t.Errorf("after Reset: %d deliveries", n)
	}
}

func TestRelayWithoutMilter(t *testing.T) {
	sink := postfixtest.StartSink(t)
	pf := postfixtest.Start(t, postfixtest.Options{RelayTo: sink.Addr()})

	msg := testMessage("no milter")
	rcpts := []string{"bob@example.org", "carol@example.net"}
	if err := pf.Send("alice@example.com", rcpts, msg); err != nil {
		t.Fatalf("Send: %v\n%s", err, pf.Log())
	}

	got := sink.WaitFor(t, 1, deliveryTimeout)
	pf.WaitQueueEmpty(t, deliveryTimeout)
	if len(got) != 1 {
		t.Fatalf("got %d deliveries, want 1 (both recipients in one transaction)", len(got))
	}
	d := got[0]
	if d.From != "alice@example.com" {
		t.Errorf("envelope sender = %q, want alice@example.com", d.From)
	}
	if gotRcpts := slices.Sorted(slices.Values(d.Rcpts)); !slices.Equal(gotRcpts, rcpts) {
		t.Errorf("envelope recipients = %v, want %v", d.Rcpts, rcpts)
	}
	if want := body(t, msg); !bytes.Equal(body(t, d.Data), want) {
		t.Errorf("body = %q, want %q", body(t, d.Data), want)
	}
	for _, h := range []string{"Subject: no milter\r\n", "To: Bob <bob@example.org>\r\n", "Received: from client.test.invalid"} {
		if !bytes.Contains(d.Data, []byte(h)) {
			t.Errorf("delivered message lacks %q:\n%s", h, d.Data)
		}
	}
	if q := pf.Queue(t); len(q) != 0 {
		t.Errorf("queue not empty after delivery: %+v", q)
	}
	// postlogd writes asynchronously; give it a moment.
	waitForLog(t, pf, "status=sent")
}

// refusingAddr returns a loopback address on which nothing listens.
func refusingAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// With milter_default_action=tempfail and an unreachable milter, Postfix 3.7
// still greets and accepts EHLO (rejections at connect time are delayed, see
// smtpd_delay_reject) and then answers MAIL FROM with
// "451 4.7.1 Service unavailable - try again later". Nothing is queued.
func TestUnreachableMilterTempfails(t *testing.T) {
	sink := postfixtest.StartSink(t)
	pf := postfixtest.Start(t, postfixtest.Options{
		Milter:        "inet:" + refusingAddr(t),
		DefaultAction: "tempfail",
		RelayTo:       sink.Addr(),
	})

	err := pf.Send("alice@example.com", []string{"bob@example.org"}, testMessage("tempfail"))
	var smtpErr *smtp.SMTPError
	if !errors.As(err, &smtpErr) {
		t.Fatalf("Send error = %v, want an SMTP reply\n%s", err, pf.Log())
	}
	if smtpErr.Code != 451 || smtpErr.EnhancedCode != (smtp.EnhancedCode{4, 7, 1}) || !smtpErr.Temporary() {
		t.Errorf("reply = %d %v %q, want 451 4.7.1", smtpErr.Code, smtpErr.EnhancedCode, smtpErr.Message)
	}
	if q := pf.Queue(t); len(q) != 0 {
		t.Errorf("queue = %+v, want empty", q)
	}
	if d := sink.Deliveries(); len(d) != 0 {
		t.Errorf("sink got %d deliveries, want none", len(d))
	}
	waitForLog(t, pf, "milter-reject: MAIL from")
}

func TestUnreachableMilterDefaultActionAccept(t *testing.T) {
	sink := postfixtest.StartSink(t)
	pf := postfixtest.Start(t, postfixtest.Options{
		Milter:        "inet:" + refusingAddr(t),
		DefaultAction: "accept",
		RelayTo:       sink.Addr(),
	})
	if err := pf.Send("alice@example.com", []string{"bob@example.org"}, testMessage("accept")); err != nil {
		t.Fatalf("Send: %v\n%s", err, pf.Log())
	}
	sink.WaitFor(t, 1, deliveryTimeout)
}

// A next hop that refuses connections leaves the message deferred, which
// exercises Queue's parsing of postqueue -j and Flush.
//
// No retry comes before the Flush: with the instance's one-second backoff,
// qmgr may take the message out of the deferred queue again while the smtp
// process that deferred it still holds its lock (a loaded machine), and
// then parks it in the incoming queue for 60 seconds ("skipped, still being
// delivered"), past this test's wait.
func TestQueueShowsDeferredMail(t *testing.T) {
	pf := postfixtest.Start(t, postfixtest.Options{
		RelayTo: refusingAddr(t),
		Extra: map[string]string{
			"smtp_connect_timeout": "1s",
			"queue_run_delay":      "1h",
			"minimal_backoff_time": "1h",
			"maximal_backoff_time": "1h",
		},
	})
	if err := pf.Send("alice@example.com", []string{"bob@example.org", "carol@example.net"}, testMessage("deferred")); err != nil {
		t.Fatalf("Send: %v\n%s", err, pf.Log())
	}

	deadline := time.Now().Add(deliveryTimeout)
	for {
		q := pf.Queue(t)
		if len(q) == 1 && q[0].QueueName == "deferred" && len(q[0].Recipients) == 2 && q[0].Recipients[0].DelayReason != "" {
			m := q[0]
			if m.Sender != "alice@example.com" || m.QueueID == "" || m.MessageSize <= 0 ||
				time.Since(m.ArrivalTime) > time.Minute || time.Since(m.ArrivalTime) < -time.Minute {
				t.Errorf("unexpected queue entry %+v", m)
			}
			if !strings.Contains(m.Recipients[0].DelayReason, "Connection refused") {
				t.Errorf("delay reason = %q, want a refused connection", m.Recipients[0].DelayReason)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("message not deferred in time; queue: %+v\n%s", q, pf.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	pf.Flush(t)
}

// Instances started concurrently must not interfere (ports, directories,
// the shared alternate_config_directories list), and cleanup must stop them
// and unregister their directories.
func TestParallelInstances(t *testing.T) {
	const n = 3
	dirs := make(chan string, n)
	t.Run("group", func(t *testing.T) {
		for i := range n {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				sink := postfixtest.StartSink(t)
				pf := postfixtest.Start(t, postfixtest.Options{RelayTo: sink.Addr()})
				dirs <- pf.Dir()
				if !slices.Contains(altConfigDirs(t), pf.Dir()) {
					t.Errorf("%s not in alternate_config_directories while running", pf.Dir())
				}
				subject := fmt.Sprintf("parallel %d", i)
				if err := pf.Send("alice@example.com", []string{fmt.Sprintf("rcpt%d@example.org", i)}, testMessage(subject)); err != nil {
					t.Fatalf("Send: %v\n%s", err, pf.Log())
				}
				got := sink.WaitFor(t, 1, deliveryTimeout)
				if !bytes.Contains(got[0].Data, []byte("Subject: "+subject+"\r\n")) {
					t.Errorf("instance %d delivered someone else's message:\n%s", i, got[0].Data)
				}
			})
		}
	})
	close(dirs)

	registered := altConfigDirs(t)
	for dir := range dirs {
		if slices.Contains(registered, dir) {
			t.Errorf("%s still in alternate_config_directories after cleanup", dir)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists after cleanup (err=%v)", dir, err)
		}
	}
}

// altConfigDirs returns alternate_config_directories of the default main.cf.
func altConfigDirs(t *testing.T) []string {
	t.Helper()
	postconf, err := exec.LookPath("postconf")
	if err != nil {
		postconf = "/usr/sbin/postconf" // sbin is often missing from PATH.
	}
	out, err := exec.Command(postconf, "-h", "alternate_config_directories").CombinedOutput()
	if err != nil {
		t.Fatalf("postconf: %v\n%s", err, out)
	}
	return strings.FieldsFunc(string(out), func(r rune) bool { return r == ',' || r == ' ' || r == '\n' })
}

func waitForLog(t *testing.T, pf *postfixtest.Instance, substr string) {
	t.Helper()
	deadline := time.Now().Add(deliveryTimeout) // ends as soon as the line is there
	for !strings.Contains(pf.Log(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("maillog lacks %q:\n%s", substr, pf.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReinjectServiceMatchesShippedMasterCF: the tests' reinjection service
// is the one admins install.
func TestReinjectServiceMatchesShippedMasterCF(t *testing.T) {
	b, err := os.ReadFile("../../deploy/postfix/master.cf")
	if err != nil {
		t.Fatal(err)
	}
	_, entry, ok := strings.Cut(string(b), "\n127.0.0.1:10026 inet")
	if !ok {
		t.Fatal("deploy/postfix/master.cf has no 127.0.0.1:10026 service")
	}
	var shipped []string
	for _, line := range strings.Split(entry, "\n")[1:] {
		o, ok := strings.CutPrefix(strings.TrimSpace(line), "-o ")
		if !ok {
			break
		}
		shipped = append(shipped, o)
	}
	if !slices.Equal(shipped, postfixtest.ReinjectOptions) {
		t.Errorf("shipped -o options\n%q\ndiffer from the tests'\n%q", shipped, postfixtest.ReinjectOptions)
	}
	for _, o := range shipped {
		if strings.Contains(o, "no_address_mappings") {
			t.Errorf("%q: copies to virtual aliases would go nowhere", o)
		}
	}
}
