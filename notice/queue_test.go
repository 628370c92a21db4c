package notice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/bccguard/bccguard/internal/syncbuf"
)

func TestLimiter(t *testing.T) {
	l := newLimiter()
	t0 := time.Now()
	if !l.allow("A@city.example.jp", time.Minute, t0) {
		t.Fatal("first notice refused")
	}
	if l.allow("a@CITY.example.jp", time.Minute, t0.Add(59*time.Second)) {
		t.Fatal("second notice inside the interval allowed (case must not matter)")
	}
	if !l.allow("b@city.example.jp", time.Minute, t0.Add(time.Second)) {
		t.Fatal("another sender refused")
	}
	if !l.allow("a@city.example.jp", time.Minute, t0.Add(time.Minute)) {
		t.Fatal("notice after the interval refused")
	}
	for i := range 3 {
		if !l.allow("c@city.example.jp", 0, t0) {
			t.Fatalf("interval 0 refused notice %d", i)
		}
	}
	// Senders whose interval has passed are forgotten.
	l.allow("d@city.example.jp", time.Minute, t0.Add(10*time.Minute))
	if len(l.last) != 1 {
		t.Fatalf("limiter keeps %d senders, want 1: %v", len(l.last), l.last)
	}
}

// recorder is a Handoff that fails the first failures calls with err.
type recorder struct {
	mu       sync.Mutex
	calls    int
	failures int
	err      error
	block    chan struct{}
	sent     [][]string
}

func (r *recorder) handoff(ctx context.Context, rcpts []string, data []byte) error {
	r.mu.Lock()
	r.calls++
	fail := r.calls <= r.failures
	block := r.block
	r.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail {
		return r.err
	}
	r.mu.Lock()
	r.sent = append(r.sent, rcpts)
	r.mu.Unlock()
	return nil
}

type counts struct {
	mu sync.Mutex
	m  map[Result]int
}

func (c *counts) count(r Result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[Result]int{}
	}
	c.m[r]++
}

func (c *counts) get(r Result) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[r]
}

func newTestNotifier(t *testing.T, o Options) (*Notifier, *counts, *syncbuf.Buffer) {
	t.Helper()
	c := &counts{}
	logs := &syncbuf.Buffer{}
	o.Log = slog.New(slog.NewTextHandler(logs, nil))
	o.Count = c.count
	if o.Retries == nil {
		o.Retries = []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond}
	}
	return New(o), c, logs
}

func request(sender string, h Handoff) Request {
	e := event(false)
	e.Sender = sender
	s := settings()
	return Request{Event: e, Settings: s, Handoff: h}
}

func TestNotifierRetriesThenSends(t *testing.T) {
	r := &recorder{failures: 2, err: &smtp.SMTPError{Code: 451, Message: "try later"}}
	n, c, logs := newTestNotifier(t, Options{})
	if got := n.Notify(request("a@city.example.jp", r.handoff)); got != Queued {
		t.Fatalf("Notify = %s", got)
	}
	if got := n.Notify(request("a@city.example.jp", r.handoff)); got != Suppressed {
		t.Fatalf("second Notify inside min_interval = %s", got)
	}
	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r.calls != 3 || len(r.sent) != 1 || c.get(Sent) != 1 || c.get(Suppressed) != 1 || c.get(Failed) != 0 {
		t.Fatalf("calls=%d sent=%v counts=%v", r.calls, r.sent, c.m)
	}
	if !strings.Contains(logs.String(), "msg=notice queue_id=4XyZ1abc result=sent kind=converted copies=2 attempts=3") {
		t.Fatalf("log:\n%s", logs)
	}
}

func TestNotifierGivesUp(t *testing.T) {
	temp := &recorder{failures: 100, err: errors.New("connection refused")}
	perm := &recorder{failures: 100, err: &smtp.SMTPError{Code: 550, Message: "no"}}
	n, c, logs := newTestNotifier(t, Options{})
	n.Notify(request("a@city.example.jp", temp.handoff))
	n.Notify(request("b@city.example.jp", perm.handoff))
	n.Shutdown(context.Background())
	if temp.calls != 4 || perm.calls != 1 || c.get(Failed) != 2 {
		t.Fatalf("temporary failure tried %d times (want 4), permanent %d (want 1); counts %v", temp.calls, perm.calls, c.m)
	}
	if strings.Count(logs.String(), "level=WARN msg=notice") != 2 || !strings.Contains(logs.String(), "connection refused") {
		t.Fatalf("log:\n%s", logs)
	}
}

func TestNotifierQueueFull(t *testing.T) {
	r := &recorder{block: make(chan struct{})}
	n, c, logs := newTestNotifier(t, Options{QueueSize: 1, Workers: 1})
	results := map[Result]int{}
	for i := range 5 {
		results[n.Notify(request("s"+string(rune('a'+i))+"@city.example.jp", r.handoff))]++
	}
	// One in the worker, one in the queue, the rest refused at once.
	if results[Failed] < 3 || c.get(Failed) != results[Failed] || !strings.Contains(logs.String(), "queue is full") {
		t.Fatalf("results %v counts %v\n%s", results, c.m, logs)
	}
	close(r.block)
	n.Shutdown(context.Background())
	if len(r.sent) != 5-results[Failed] {
		t.Fatalf("sent %d, want %d", len(r.sent), 5-results[Failed])
	}
	if got := n.Notify(request("late@city.example.jp", r.handoff)); got != Failed {
		t.Fatalf("Notify after Shutdown = %s", got)
	}
}

func TestNotifierShutdownDrops(t *testing.T) {
	r := &recorder{block: make(chan struct{})}
	n, c, logs := newTestNotifier(t, Options{Workers: 1})
	for _, s := range []string{"a", "b", "c"} {
		if got := n.Notify(request(s+"@city.example.jp", r.handoff)); got != Queued {
			t.Fatalf("Notify = %s", got)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	// The handoff blocks for ever: only the deadline can end Shutdown.
	done := make(chan error, 1)
	go func() { done <- n.Shutdown(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v", err)
		}
	case <-time.After(time.Minute):
		// A hang detector, not a speed check.
		t.Fatal("Shutdown waited past its deadline")
	}
	if c.get(Failed) != 3 || strings.Count(logs.String(), "result=dropped") != 3 {
		t.Fatalf("counts %v\n%s", c.m, logs)
	}
}

// A sender whose notice failed may get the next one at once; the limiter
// never holds more than maxTrackedSenders.
func TestLimiterForgetsFailuresAndStaysBounded(t *testing.T) {
	temp := &recorder{failures: 100, err: errors.New("connection refused")}
	n, c, _ := newTestNotifier(t, Options{})
	r := request("a@city.example.jp", temp.handoff)
	r.Settings.MinInterval = time.Hour
	n.Notify(r)
	n.Shutdown(context.Background())
	if c.get(Failed) != 1 || !n.limiter.allow("a@city.example.jp", time.Hour, time.Now()) {
		t.Fatalf("a failed notice still holds the sender back (counts %v)", c.m)
	}
	l := newLimiter()
	now := time.Now()
	for i := range maxTrackedSenders {
		l.last[fmt.Sprintf("s%d@x.example", i)] = now
	}
	if l.allow("new@city.example.jp", time.Hour, now) || len(l.last) != maxTrackedSenders {
		t.Fatalf("limiter grew past %d senders", maxTrackedSenders)
	}
}
