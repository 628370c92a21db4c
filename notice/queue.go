package notice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/bccguard/bccguard/audit"
)

// Result is what became of a notice, as the audit log and the metric
// bccguard_notices_total{result} say it.
type Result string

const (
	// Queued: accepted for sending; a later "notice" record tells the end.
	Queued Result = "queued"
	// Sent: Postfix accepted it (250 to its DATA).
	Sent Result = "sent"
	// Suppressed: the sender had a notice less than min_interval ago.
	Suppressed Result = "suppressed"
	// Failed: every attempt failed, the queue was full, or it was still
	// queued when the daemon stopped (logged as dropped).
	Failed Result = "failed"
)

// Handoff hands one notice to Postfix with the null envelope sender
// (MAIL FROM:<>) for rcpts; it returns nil only when Postfix accepted it.
// It must give up when ctx is done.
type Handoff func(ctx context.Context, rcpts []string, data []byte) error

// Request is one notice to send.
type Request struct {
	// Event is the conversion to tell about.
	Event Event
	// Settings are the notice section of the config snapshot that decided.
	Settings *Settings
	// Handoff reaches the reinjection service of that snapshot.
	Handoff Handoff
	// Audit says how addresses appear in the log.
	Audit audit.Options
}

// Options configure a Notifier; zero values take the defaults.
type Options struct {
	// Log receives the "notice" audit records and warnings.
	Log *slog.Logger
	// Count is called once per notice with its final result (and with
	// Suppressed), for the metric.
	Count func(Result)
	// QueueSize bounds the notices waiting to be sent (default 1000).
	QueueSize int
	// Workers is how many notices are handed over at once (default 2).
	Workers int
	// Retries are the waits before each further attempt (default 1s, 4s,
	// 10s: four attempts within about a quarter of a minute).
	Retries []time.Duration
}

// Notifier sends notices in the background. Notify never blocks: a full
// queue drops the notice (logged and counted), never the mail.
type Notifier struct {
	log     *slog.Logger
	count   func(Result)
	retries []time.Duration
	limiter *limiter

	mu     sync.RWMutex
	closed bool
	queue  chan Request

	// ctx is cancelled when Shutdown runs out of time: attempts in
	// flight stop and what is left is dropped.
	ctx     context.Context
	cancel  context.CancelFunc
	workers sync.WaitGroup
}

// New starts a Notifier; stop it with Shutdown.
func New(o Options) *Notifier {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Count == nil {
		o.Count = func(Result) {}
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 1000
	}
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.Retries == nil {
		o.Retries = []time.Duration{time.Second, 4 * time.Second, 10 * time.Second}
	}
	n := &Notifier{log: o.Log, count: o.Count, retries: o.Retries, limiter: newLimiter(),
		queue: make(chan Request, o.QueueSize)}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	for range o.Workers {
		n.workers.Add(1)
		go n.work()
	}
	return n
}

// Notify queues a notice, or suppresses it under min_interval. It returns
// at once: Queued, Suppressed, or Failed when the queue is full or the
// notifier has stopped.
func (n *Notifier) Notify(r Request) Result {
	if !n.limiter.allow(r.Event.Sender, r.Settings.MinInterval, time.Now()) {
		n.count(Suppressed)
		return Suppressed
	}
	r.Event = r.Event.detached(r.Settings.ListRecipients)
	n.mu.RLock()
	defer n.mu.RUnlock()
	why := "the notice queue is full"
	if !n.closed {
		select {
		case n.queue <- r:
			return Queued
		default:
		}
	} else {
		why = "bccguard is stopping"
	}
	n.finish(r, Failed, 0, errors.New(why))
	return Failed
}

// Shutdown stops taking notices and sends those queued until ctx is done;
// the ones still queued then are logged as dropped.
func (n *Notifier) Shutdown(ctx context.Context) error {
	n.mu.Lock()
	if !n.closed {
		n.closed = true
		close(n.queue)
	}
	n.mu.Unlock()
	done := make(chan struct{})
	go func() { n.workers.Wait(); close(done) }()
	select {
	case <-done:
		n.cancel()
		return nil
	case <-ctx.Done():
		n.cancel()
		<-done
		return fmt.Errorf("notice: shutdown: %w", ctx.Err())
	}
}

func (n *Notifier) work() {
	defer n.workers.Done()
	for r := range n.queue {
		n.deliver(r)
	}
}

// deliver composes and hands over one notice, retrying temporary
// failures.
func (n *Notifier) deliver(r Request) {
	if n.ctx.Err() != nil {
		n.finish(r, Failed, 0, errDropped)
		return
	}
	msg, err := Compose(r.Settings, r.Event, time.Now())
	if err != nil {
		n.finish(r, Failed, 0, err)
		return
	}
	for attempt := 1; ; attempt++ {
		err := r.Handoff(n.ctx, msg.Rcpts, msg.Data)
		switch {
		case err == nil:
			n.finish(r, Sent, attempt, nil)
			return
		case n.ctx.Err() != nil:
			n.finish(r, Failed, attempt, fmt.Errorf("%w: %v", errDropped, err))
			return
		case permanent(err) || attempt > len(n.retries):
			n.finish(r, Failed, attempt, err)
			return
		}
		select {
		case <-time.After(n.retries[attempt-1]):
		case <-n.ctx.Done():
			n.finish(r, Failed, attempt, fmt.Errorf("%w: %v", errDropped, err))
			return
		}
	}
}

// errDropped marks a notice given up at shutdown.
var errDropped = errors.New("dropped: bccguard stopped before it could be sent (shutdown_timeout)")

// permanent reports a 5xx reply: trying again would get the same.
func permanent(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code >= 500
}

// finish logs and counts the end of one notice.
func (n *Notifier) finish(r Request, res Result, attempts int, err error) {
	n.count(res)
	if res == Failed {
		// A sender who got nothing is not held back by min_interval.
		n.limiter.forget(r.Event.Sender)
	}
	rec := audit.NoticeRecord{
		QueueID:  r.Event.QueueID,
		Sender:   r.Event.Sender,
		Kind:     Kind(r.Event.Decision.DryRun),
		Result:   string(res),
		Copies:   len(recipients(r.Event.Sender, r.Event.Decision.Settings.NotifyCopyTo)) - 1,
		Attempts: attempts,
		Err:      err,
	}
	if errors.Is(err, errDropped) {
		rec.Result = "dropped"
	}
	audit.LogNotice(context.Background(), n.log, r.Audit, rec)
}
