package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	milter "github.com/d--j/go-milter"
)

// Config describes one run of the driver.
type Config struct {
	// Network is "tcp" or "unix"; Address the host:port or socket path.
	Network, Address string
	// Sessions is the number of concurrent milter sessions.
	Sessions int
	// Messages is the number of transactions per session; ignored when
	// Duration is set.
	Messages int
	// Duration, when positive, runs each session for that long instead.
	Duration time.Duration
	// To is the number of To addresses (and envelope recipients) per
	// message: the first internal, the others external.
	To int
	// Body is the body size in bytes.
	Body int
	// Internal is the sender's domain and that of the first To address.
	Internal string
	// Timeout bounds every read and write on a milter connection.
	Timeout time.Duration
	// PostfixIO writes like Postfix does over TCP: with Nagle's algorithm
	// on, and in two bursts per message, one when smtpd hands the milter
	// connection to cleanup (after DATA) and one at end-of-message. By
	// default the driver writes one burst per reply it waits for, with
	// TCP_NODELAY, as an ideal MTA would.
	PostfixIO bool
}

// Validate checks the numbers; idle runs need no messages.
func (c Config) Validate(idle bool) error {
	switch {
	case c.Sessions < 1:
		return errors.New("-sessions must be at least 1")
	case !idle && c.Duration <= 0 && c.Messages < 1:
		return errors.New("-messages must be at least 1 (or set -duration)")
	case c.To < 1:
		return errors.New("-to must be at least 1")
	case c.Body < 0:
		return errors.New("-body must not be negative")
	case c.Internal == "" || strings.ContainsAny(c.Internal, "@ \t<>,"):
		return fmt.Errorf("-internal %q is not a domain", c.Internal)
	case c.Timeout <= 0:
		return errors.New("-timeout must be positive")
	}
	return nil
}

// Result is what a run measured. Messages counts completed transactions
// (an end-of-message reply or an earlier final reply); failed ones are
// counted in Errors only.
type Result struct {
	Addr     string `json:"addr"`
	Sessions int    `json:"sessions"`
	To       int    `json:"to"`
	Body     int    `json:"body_bytes"`
	// Negotiated is what the filter asked for, as seen in the first session.
	Negotiated string  `json:"negotiated"`
	Messages   int64   `json:"messages"`
	ElapsedSec float64 `json:"elapsed_s"`
	MsgsPerSec float64 `json:"msgs_per_s"`
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	// Changed counts messages that came back with a change, insertion or
	// addition of a To field.
	Changed int64 `json:"to_changed"`
	// Rejected counts messages refused (reject, tempfail, discard).
	Rejected int64 `json:"rejected"`
	// Errors counts failed transactions and sessions that could not be
	// (re)opened.
	Errors     int64  `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
}

// Postfix 3.7's default macro lists (postconf -d | grep _macros). A filter
// that asks for its own lists (SMFIR_SETSYMLIST) gets those instead.
var postfixMacros = []struct {
	stage milter.MacroStage
	names []milter.MacroName
}{
	{milter.StageConnect, []milter.MacroName{milter.MacroMTAFQDN, milter.MacroDaemonName, milter.MacroDaemonAddr, milter.MacroMTAVersion, milter.MacroRFC1413AuthInfo}},
	{milter.StageHelo, []milter.MacroName{milter.MacroTlsVersion, milter.MacroCipher, milter.MacroCipherBits, milter.MacroCertSubject, milter.MacroCertIssuer}},
	{milter.StageMail, []milter.MacroName{milter.MacroQueueId, milter.MacroAuthType, milter.MacroAuthAuthen, milter.MacroAuthAuthor, milter.MacroMailAddr, milter.MacroMailHost, milter.MacroMailMailer}},
	{milter.StageRcpt, []milter.MacroName{milter.MacroQueueId, milter.MacroRcptAddr, milter.MacroRcptHost, milter.MacroRcptMailer}},
	{milter.StageData, []milter.MacroName{milter.MacroQueueId}},
	{milter.StageEOH, []milter.MacroName{milter.MacroQueueId}},
	{milter.StageEOM, []milter.MacroName{milter.MacroQueueId}},
}

// newClient returns a client that offers what Postfix 3.7 offers with
// milter_protocol = 6: protocol version 6, every action, every protocol
// option, 64 KiB body chunks; the filter negotiates down. Timeouts are
// applied by the buffered connection, not per packet by go-milter.
func newClient(cfg Config, d *bufferedDialer) *milter.Client {
	opts := []milter.Option{
		milter.WithMaximumVersion(6),
		milter.WithActions(milter.AllClientSupportedActionMasks),
		milter.WithProtocols(milter.OptNoConnect | milter.OptNoHelo | milter.OptNoMailFrom | milter.OptNoRcptTo |
			milter.OptNoBody | milter.OptNoHeaders | milter.OptNoEOH | milter.OptNoUnknown | milter.OptNoData |
			milter.OptSkip | milter.OptRcptRej | milter.OptNoReplies | milter.OptHeaderLeadingSpace),
		milter.WithOfferedMaxData(milter.DataSize64K),
		milter.WithUsedMaxData(milter.DataSize64K),
		milter.WithDialer(d),
		milter.WithReadTimeout(0),
		milter.WithWriteTimeout(0),
		milter.WithoutDefaultMacros(),
	}
	for _, m := range postfixMacros {
		opts = append(opts, milter.WithMacroRequest(m.stage, m.names))
	}
	return milter.NewClient(cfg.Network, cfg.Address, opts...)
}

// worker is one session: one milter connection at a time, reopened after
// an error.
type worker struct {
	id     int
	cfg    Config
	client *milter.Client
	dialer *bufferedDialer
	msg    *messageTemplate

	macros *milter.MacroBag
	sess   *milter.ClientSession
	seq    int

	latencies               []time.Duration
	done, changed, rejected int64
	errors                  int64
	firstErr                error
}

func newWorker(id int, cfg Config) *worker {
	w := &worker{id: id, cfg: cfg, msg: newMessageTemplate(cfg)}
	w.dialer = &bufferedDialer{timeout: cfg.Timeout, nagle: cfg.PostfixIO}
	w.client = newClient(cfg, w.dialer)
	w.macros = milter.NewMacroBag()
	w.macros.Set(milter.MacroMTAFQDN, "mx."+cfg.Internal)
	w.macros.Set(milter.MacroDaemonName, "mx."+cfg.Internal)
	w.macros.Set(milter.MacroDaemonAddr, "127.0.0.1")
	w.macros.Set(milter.MacroMTAVersion, "Postfix 3.7.11")
	w.macros.Set(milter.MacroRFC1413AuthInfo, "unknown [127.0.0.1]")
	w.macros.Set(milter.MacroMailMailer, "smtp")
	w.macros.Set(milter.MacroRcptMailer, "smtp")
	return w
}

func (w *worker) fail(err error) {
	w.errors++
	if w.firstErr == nil {
		w.firstErr = err
	}
}

// open connects, negotiates and sends Conn and Helo, as smtpd does when an
// SMTP client connects and greets.
func (w *worker) open() error {
	s, err := w.client.Session(w.macros)
	if err != nil {
		return fmt.Errorf("session %d: open: %w", w.id, err)
	}
	if _, err := s.Conn("localhost", milter.FamilyInet, uint16(40000+w.id%20000), "127.0.0.1"); err != nil {
		_ = s.Close()
		return fmt.Errorf("session %d: conn: %w", w.id, err)
	}
	if _, err := s.Helo("client.example"); err != nil {
		_ = s.Close()
		return fmt.Errorf("session %d: helo: %w", w.id, err)
	}
	w.sess = s
	return nil
}

func (w *worker) close() {
	if w.sess != nil {
		_ = w.sess.Close()
		w.sess = nil
	}
}

// loop runs transactions until the session's count or the deadline is
// reached, or ctx is done.
func (w *worker) loop(ctx context.Context, deadline time.Time) {
	defer w.close()
	for i := 0; ; i++ {
		if ctx.Err() != nil {
			return
		}
		if deadline.IsZero() {
			if i >= w.cfg.Messages {
				return
			}
		} else if !time.Now().Before(deadline) {
			return
		}
		if w.sess == nil {
			if err := w.open(); err != nil {
				// The filter is gone or refusing: stop this session
				// rather than spin.
				w.fail(err)
				return
			}
		}
		start := time.Now()
		changed, rejected, err := w.transaction()
		took := time.Since(start)
		if err != nil {
			w.fail(fmt.Errorf("session %d, message %d: %w", w.id, i+1, err))
			w.close()
			continue
		}
		w.latencies = append(w.latencies, took)
		w.done++
		if changed {
			w.changed++
		}
		if rejected {
			w.rejected++
		}
	}
}

// transaction sends one message and reports whether the filter changed To
// and whether it refused the message.
func (w *worker) transaction() (changed, rejected bool, err error) {
	s := w.sess
	w.seq++
	qid := fmt.Sprintf("%04X%06X", w.id&0xffff, w.seq&0xffffff)
	w.macros.Set(milter.MacroQueueId, qid)
	w.macros.Set(milter.MacroMailAddr, w.msg.sender)
	w.macros.Set(milter.MacroMailHost, w.cfg.Internal)

	act, err := s.Mail(w.msg.sender, "")
	if err != nil {
		return false, false, fmt.Errorf("mail: %w", err)
	}
	if done, rej, err := w.early(act); done {
		return false, rej, err
	}
	for _, r := range w.msg.rcpts {
		w.macros.Set(milter.MacroRcptAddr, r.addr)
		w.macros.Set(milter.MacroRcptHost, r.domain)
		act, err := s.Rcpt(r.addr, "")
		if err != nil {
			return false, false, fmt.Errorf("rcpt: %w", err)
		}
		// A refused recipient is dropped by the MTA; the message goes on
		// to the others.
		if act.Type == milter.ActionAccept || act.Type == milter.ActionDiscard {
			if done, rej, err := w.early(act); done {
				return false, rej, err
			}
		}
	}
	if act, err = s.DataStart(); err != nil {
		return false, false, fmt.Errorf("data: %w", err)
	}
	if done, rej, err := w.early(act); done {
		return false, rej, err
	}
	if w.cfg.PostfixIO {
		// smtpd passes the milter connection to cleanup here, flushing
		// what it has written since the last reply it read.
		if err := w.dialer.conn.Flush(); err != nil {
			return false, false, fmt.Errorf("flush before header: %w", err)
		}
	}
	leadSpace := s.ProtocolOption(milter.OptHeaderLeadingSpace)
	for _, f := range w.msg.header(qid, w.seq) {
		v := f.value
		if leadSpace {
			v = " " + v
		}
		if act, err = s.HeaderField(f.name, v, nil); err != nil {
			return false, false, fmt.Errorf("header %s: %w", f.name, err)
		}
		if done, rej, err := w.early(act); done {
			return false, rej, err
		}
	}
	if act, err = s.HeaderEnd(); err != nil {
		return false, false, fmt.Errorf("end of header: %w", err)
	}
	if done, rej, err := w.early(act); done {
		return false, rej, err
	}
	mods, act, err := s.BodyReadFrom(bytes.NewReader(w.msg.body))
	if err != nil {
		return false, false, fmt.Errorf("body or end of message: %w", err)
	}
	if act == nil {
		// A final reply to a body chunk: End was not reached.
		return false, false, errors.New("body: filter ended the message before end-of-message without a reply")
	}
	for _, m := range mods {
		switch m.Type {
		case milter.ActionChangeHeader, milter.ActionInsertHeader, milter.ActionAddHeader:
			if strings.EqualFold(m.HeaderName, "To") {
				changed = true
			}
		}
	}
	return changed, refused(act.Type), nil
}

// early handles a reply other than continue before end-of-message: the MTA
// stops sending this message to the filter, so the session sends Abort
// (as Postfix does at the next RSET or MAIL) to be ready for the next one.
func (w *worker) early(act *milter.Action) (done, rejected bool, err error) {
	if act.Type == milter.ActionContinue {
		return false, false, nil
	}
	if err := w.sess.Abort(nil); err != nil {
		return true, false, fmt.Errorf("abort after early %v reply: %w", act.Type, err)
	}
	return true, refused(act.Type), nil
}

func refused(t milter.ActionType) bool {
	switch t {
	case milter.ActionReject, milter.ActionTempFail, milter.ActionRejectWithCode, milter.ActionDiscard:
		return true
	}
	return false
}

// negotiated describes what the filter asked for in session s.
func negotiated(s *milter.ClientSession) string {
	var act milter.OptAction
	for i := range 9 {
		if o := milter.OptAction(1 << i); s.ActionOption(o) {
			act |= o
		}
	}
	var proto milter.OptProtocol
	for i := range 21 {
		if o := milter.OptProtocol(1 << i); s.ProtocolOption(o) {
			proto |= o
		}
	}
	return fmt.Sprintf("actions 0x%x, protocol 0x%x: %s", uint32(act), uint32(proto), protoNames(proto))
}

var protoBits = []string{
	"NOCONNECT", "NOHELO", "NOMAIL", "NORCPT", "NOBODY", "NOHDRS", "NOEOH", "NR_HDR",
	"NOUNKNOWN", "NODATA", "SKIP", "RCPT_REJ", "NR_CONN", "NR_HELO", "NR_MAIL", "NR_RCPT",
	"NR_DATA", "NR_UNKN", "NR_EOH", "NR_BODY", "HDR_LEADSPC",
}

func protoNames(p milter.OptProtocol) string {
	var names []string
	for i, n := range protoBits {
		if p&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, " ")
}

// openAll opens one session per worker, concurrently.
func openAll(ctx context.Context, workers []*worker) error {
	var wg sync.WaitGroup
	errs := make([]error, len(workers))
	for i, w := range workers {
		wg.Go(func() {
			if ctx.Err() == nil {
				errs[i] = w.open()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, w := range workers {
			w.close()
		}
		return err
	}
	return ctx.Err()
}

// Run opens every session, then starts the clock and runs the transactions.
// It returns an error only when the sessions cannot be opened at all;
// failures later on are counted in the result.
func Run(ctx context.Context, cfg Config) (Result, error) {
	workers := make([]*worker, cfg.Sessions)
	for i := range workers {
		workers[i] = newWorker(i, cfg)
	}
	if err := openAll(ctx, workers); err != nil {
		return Result{}, fmt.Errorf("open %d sessions to %s:%s: %w", cfg.Sessions, cfg.Network, cfg.Address, err)
	}
	res := Result{Sessions: cfg.Sessions, To: cfg.To, Body: cfg.Body, Negotiated: negotiated(workers[0].sess)}

	var deadline time.Time
	start := time.Now()
	if cfg.Duration > 0 {
		deadline = start.Add(cfg.Duration)
	}
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { w.loop(ctx, deadline) })
	}
	wg.Wait()
	elapsed := time.Since(start)

	var all []time.Duration
	for _, w := range workers {
		all = append(all, w.latencies...)
		res.Messages += w.done
		res.Changed += w.changed
		res.Rejected += w.rejected
		res.Errors += w.errors
		if w.firstErr != nil && res.FirstError == "" {
			res.FirstError = w.firstErr.Error()
		}
	}
	res.ElapsedSec = elapsed.Seconds()
	if elapsed > 0 {
		res.MsgsPerSec = float64(res.Messages) / elapsed.Seconds()
	}
	slices.Sort(all)
	res.P50Ms = ms(percentile(all, 0.50))
	res.P99Ms = ms(percentile(all, 0.99))
	if len(all) > 0 {
		res.MaxMs = ms(all[len(all)-1])
	}
	return res, nil
}

// percentile returns the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Idle opens cfg.Sessions sessions (negotiation, Conn, Helo), calls ready,
// and holds them without traffic until cfg.Duration has passed (forever if
// zero) or ctx is done. Then every session sends one message, so that a
// filter that dropped idle sessions shows up as errors rather than as a
// small memory footprint.
func Idle(ctx context.Context, cfg Config, ready func(n int, negotiated string)) (Result, error) {
	workers := make([]*worker, cfg.Sessions)
	for i := range workers {
		workers[i] = newWorker(i, cfg)
	}
	if err := openAll(ctx, workers); err != nil {
		return Result{}, fmt.Errorf("open %d idle sessions to %s:%s: %w", cfg.Sessions, cfg.Network, cfg.Address, err)
	}
	res := Result{Sessions: cfg.Sessions, To: cfg.To, Body: cfg.Body, Negotiated: negotiated(workers[0].sess)}
	ready(cfg.Sessions, res.Negotiated)

	start := time.Now()
	hold := ctx.Done()
	if cfg.Duration > 0 {
		t := time.NewTimer(cfg.Duration)
		defer t.Stop()
		select {
		case <-t.C:
		case <-hold:
		}
	} else {
		<-hold
	}
	res.ElapsedSec = time.Since(start).Seconds()

	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			defer w.close()
			if _, _, err := w.transaction(); err != nil {
				w.fail(fmt.Errorf("session %d after idling: %w", w.id, err))
			}
		})
	}
	wg.Wait()
	for _, w := range workers {
		res.Errors += w.errors
		if w.firstErr != nil && res.FirstError == "" {
			res.FirstError = w.firstErr.Error()
		}
	}
	return res, nil
}
