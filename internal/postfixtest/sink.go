package postfixtest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Delivery is one mail transaction received by a [Sink].
type Delivery struct {
	// From is the envelope sender (MAIL FROM), without angle brackets; it is
	// empty for the null sender.
	From string
	// Rcpts are the envelope recipients (RCPT TO) in the order given.
	Rcpts []string
	// Data is the message (headers and body) exactly as the SMTP server
	// library handed it over: dot-unstuffed, with CRLF line endings.
	Data []byte
	// Mail holds the MAIL FROM parameters (SMTPUTF8; RET and ENVID from a
	// StartDSNSink).
	Mail smtp.MailOptions
	// RcptOptions holds each recipient's RCPT TO parameters (NOTIFY and
	// ORCPT from a StartDSNSink), in the order of Rcpts.
	RcptOptions []smtp.RcptOptions
}

// Sink is an SMTP server that accepts every sender and recipient and records
// each delivered message. It stands in for the next hop behind Postfix.
// It is safe for concurrent use.
type Sink struct {
	addr string

	mu         sync.Mutex
	deliveries []Delivery
	// changed is closed and replaced whenever deliveries changes, so waiters
	// can block instead of polling.
	changed chan struct{}
}

// StartSink starts a [Sink] on 127.0.0.1 with a kernel-chosen port. The sink
// is shut down when the test and its subtests finish.
func StartSink(t testing.TB) *Sink {
	t.Helper()
	return startSink(t, false)
}

// StartDSNSink is StartSink with the DSN extension offered, so that
// Postfix passes NOTIFY, ORCPT, RET and ENVID on (Delivery.Mail and
// RcptOptions). go-smtp refuses the ORCPT=utf-8;... Postfix writes for a
// UTF-8 recipient, so such recipients bounce at this sink.
func StartDSNSink(t testing.TB) *Sink {
	t.Helper()
	return startSink(t, true)
}

func startSink(t testing.TB, dsn bool) *Sink {
	t.Helper()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("postfixtest: sink: listen: %v", err)
	}
	s := &Sink{addr: l.Addr().String(), changed: make(chan struct{})}

	logger := &testLogger{t: t}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &sinkSession{sink: s}, nil
	}))
	// The name must differ from the instance's myhostname: the Postfix SMTP
	// client bounces mail whose next hop greets with its own name ("mail for
	// ... loops back to myself").
	srv.Domain = "sink.test.invalid"
	srv.EnableSMTPUTF8 = true
	srv.EnableDSN = dsn
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.ErrorLog = logger

	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	t.Cleanup(func() {
		if err := srv.Close(); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			t.Errorf("postfixtest: sink: close: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("postfixtest: sink: serve: %v", err)
		}
		// Connection handlers may still be winding down; logging through t
		// after the test has completed would panic.
		logger.stop()
	})
	return s
}

// Addr returns the sink's listening address as host:port, suitable for
// [Options].RelayTo.
func (s *Sink) Addr() string { return s.addr }

// Deliveries returns a copy of the deliveries received so far, oldest first.
func (s *Sink) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cloneDeliveries(s.deliveries)
}

// WaitFor waits until the sink has received at least n deliveries and returns
// a copy of all of them. If that does not happen within timeout it fails the
// test with t.Fatalf, so it must be called from the test's goroutine.
func (s *Sink) WaitFor(t testing.TB, n int, timeout time.Duration) []Delivery {
	t.Helper()

	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		got, changed := len(s.deliveries), s.changed
		if got >= n {
			d := cloneDeliveries(s.deliveries)
			s.mu.Unlock()
			return d
		}
		s.mu.Unlock()

		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("postfixtest: sink %s: got %d deliveries, want at least %d after %v%s",
				s.addr, got, n, timeout, summarize(s.Deliveries()))
			return nil
		}
	}
}

// Reset forgets all deliveries received so far.
func (s *Sink) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deliveries = nil
	s.notifyLocked()
}

func (s *Sink) add(d Delivery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deliveries = append(s.deliveries, d)
	s.notifyLocked()
}

func (s *Sink) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func cloneDeliveries(in []Delivery) []Delivery {
	if in == nil {
		return nil
	}
	out := make([]Delivery, len(in))
	for i, d := range in {
		out[i] = Delivery{
			From:  d.From,
			Rcpts: append([]string(nil), d.Rcpts...),
			Data:  append([]byte(nil), d.Data...),
			Mail:  d.Mail,
			// The options' own slices are never changed after add.
			RcptOptions: append([]smtp.RcptOptions(nil), d.RcptOptions...),
		}
	}
	return out
}

// summarize lists deliveries' envelopes for failure messages.
func summarize(ds []Delivery) string {
	if len(ds) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("; received:")
	for i, d := range ds {
		fmt.Fprintf(&b, "\n  #%d from=<%s> rcpts=%v size=%d", i+1, d.From, d.Rcpts, len(d.Data))
	}
	return b.String()
}

// sinkSession implements smtp.Session for one client connection.
type sinkSession struct {
	sink  *Sink
	from  string
	rcpts []string
	mail  smtp.MailOptions
	ropts []smtp.RcptOptions
}

func (ss *sinkSession) Mail(from string, o *smtp.MailOptions) error {
	ss.from, ss.rcpts, ss.ropts = from, nil, nil
	ss.mail = smtp.MailOptions{}
	if o != nil {
		ss.mail = *o
	}
	return nil
}

func (ss *sinkSession) Rcpt(to string, o *smtp.RcptOptions) error {
	ss.rcpts = append(ss.rcpts, to)
	var ro smtp.RcptOptions
	if o != nil {
		ro = *o
	}
	ss.ropts = append(ss.ropts, ro)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("postfixtest: sink: read message: %w", err)
	}
	ss.sink.add(Delivery{From: ss.from, Rcpts: ss.rcpts, Data: data, Mail: ss.mail, RcptOptions: ss.ropts})
	ss.Reset()
	return nil
}

func (ss *sinkSession) Reset() { ss.from, ss.rcpts, ss.ropts = "", nil, nil }

func (ss *sinkSession) Logout() error { return nil }

// testLogger routes go-smtp's error log to t.Logf until stop is called.
type testLogger struct {
	mu      sync.Mutex
	t       testing.TB
	stopped bool
}

func (l *testLogger) Printf(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.t.Logf("postfixtest: sink: "+format, v...)
	}
}

func (l *testLogger) Println(v ...any) {
	l.Printf("%s", strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
}

func (l *testLogger) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
}
