// Package milter adapts go-milter to the policy: it collects the envelope
// sender and the address header fields of each message, asks the policy
// for a decision at end-of-message, and answers with header changes.
package milter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/bccguard/bccguard/config"
	"github.com/bccguard/bccguard/metrics"
	"github.com/bccguard/bccguard/notice"
	"github.com/bccguard/bccguard/policy"
)

// Actions are the modifications bccguard may make: change and add header
// fields. It never asks to change the envelope, so Postfix would refuse an
// envelope change even if a bug tried one.
const Actions = gomilter.OptChangeHeader | gomilter.OptAddHeader

// Protocol turns off every event the decision does not need, and every
// reply bccguard has nothing to say in: Postfix then sends MAIL FROM, the
// header fields and end-of-message only, and never the body.
const Protocol = gomilter.OptNoConnect | gomilter.OptNoHelo | gomilter.OptNoRcptTo |
	gomilter.OptNoData | gomilter.OptNoUnknown | gomilter.OptNoEOH | gomilter.OptNoBody |
	gomilter.OptNoMailReply | gomilter.OptNoHeaderReply

// MaxSessions caps the milter sessions served at once, so that
// connections from a local user cannot exhaust the daemon's file
// descriptors. From nine tenths of it on, sessions silent for
// pressureIdleTimeout are closed to make room for new ones; a connection
// that still finds no room is closed at once (Postfix then applies
// milter_default_action), counted and reported by /readyz.
const MaxSessions = 2000

// pressureIdleTimeout is how long a session may stay silent while the
// cap is nearly reached. Postfix's own sessions talk: each message sends
// MAIL FROM, the header and end-of-message; what stays silent for a
// minute with the daemon that busy is almost always a connection held
// on purpose. A message whose DATA takes longer than this while the cap
// is nearly full is tempfailed and retried.
const pressureIdleTimeout = time.Minute

// MaxPacketSize is the largest milter packet bccguard reads; a longer one
// ends the session. Postfix's largest packets are a body chunk (64 KiB
// with the default negotiation) and a header field, bounded by
// header_size_limit (100 KiB by default; an admin who raises it near
// 1 MiB would see such mail tempfailed). Packets are read in 64 KiB
// chunks as their bytes arrive, so a claimed length costs at most one
// chunk before that.
const MaxPacketSize = 1 << 20

// messageIdleTimeout ends a session that sends nothing for this long
// inside a message. Postfix sends nothing between MAIL FROM and the header
// fields, which it passes only after the whole DATA has arrived: a large
// message over a slow link can take an hour, so it is generous.
const messageIdleTimeout = 3 * time.Hour

// sessionIdleTimeout ends a session that sends nothing for this long
// outside a message (after negotiation, or after end-of-message or abort).
// Postfix's smtpd opens its milter connections when the SMTP session
// starts and sends bccguard nothing until MAIL FROM; in between a client
// may send commands (EHLO, STARTTLS, AUTH, NOOP keep-alives), each within
// smtpd_timeout (300 s), until smtpd_junk_command_limit and the error
// limits end it. An hour covers such sessions; if the milter is gone,
// Postfix tempfails that session's next message (milter_default_action).
// Silent crowds are handled by pressureIdleTimeout, not by this.
const sessionIdleTimeout = time.Hour

// capWarnInterval spaces the warnings about refused and evicted sessions.
const capWarnInterval = time.Minute

// Server is a milter server that applies the current config snapshot.
type Server struct {
	config  *atomic.Pointer[config.Config]
	log     *slog.Logger
	metrics *metrics.Metrics
	srv     *gomilter.Server
	limits  limits
	// limit is the listener that enforces maxSessions, set by Serve.
	limit atomic.Pointer[limitListener]
	// lastCapWarn is when the last "cap reached" warning was logged
	// (Unix nanoseconds); refusedSince counts refusals since then.
	lastCapWarn  atomic.Int64
	refusedSince atomic.Int64
	evictedSince atomic.Int64
	// decide is policy.Decide; tests replace it before serving to reach
	// the panic path.
	decide func(*policy.Config, policy.Message) policy.Decision
	// origins warns about unqualified local sender domains.
	origins *originWarner
	// splitStores are the records of delivery: split (split.go).
	splitStores splitStores
	// stopping is closed when Shutdown or Close begins: splits in
	// progress hand over no further copy.
	stopping chan struct{}
	stopOnce sync.Once
	// notifier sends notices to senders; nil sends none (notify.go).
	notifier *notice.Notifier
}

// NewServer returns a server reading the config from c at the start of
// every milter session; swap the pointer to reload. A nil logger discards
// logs; nil metrics are not collected.
func NewServer(c *atomic.Pointer[config.Config], log *slog.Logger, m *metrics.Metrics) *Server {
	return newServer(c, log, m, defaultLimits)
}

// limits bound what a session may hold; tests shorten them.
type limits struct {
	pressureIdle    time.Duration
	maxSessions     int64
	idle, inMessage time.Duration
}

var defaultLimits = limits{maxSessions: MaxSessions, idle: sessionIdleTimeout, inMessage: messageIdleTimeout,
	pressureIdle: pressureIdleTimeout}

func newServer(c *atomic.Pointer[config.Config], log *slog.Logger, m *metrics.Metrics, lim limits) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = metrics.New("")
	}
	s := &Server{config: c, log: log, metrics: m, decide: policy.Decide, limits: lim, origins: newOriginWarner(), stopping: make(chan struct{})}
	protocolLog.Store(log)
	s.srv = gomilter.NewServer(
		gomilter.WithDynamicMilter(func(uint32, gomilter.OptAction, gomilter.OptProtocol, gomilter.DataSize) gomilter.Milter {
			return newSession(s)
		}),
		gomilter.WithActions(Actions),
		gomilter.WithReadTimeout(lim.inMessage),
		gomilter.WithIdleTimeout(lim.idle),
		gomilter.WithMaxPacketSize(MaxPacketSize),
		gomilter.WithPanicHandler(s.sessionPanicked),
		gomilter.WithProtocols(Protocol),
		// Adds the events and actions of delivery: split per connection.
		gomilter.WithNegotiationCallback(s.negotiate),
		// Postfix sends the queue id at end-of-message by default
		// (milter_end_of_data_macros); asking for it keeps it there when
		// an admin has changed that list.
		gomilter.WithMacroRequest(gomilter.StageEOM, []gomilter.MacroName{gomilter.MacroQueueId}),
	)
	return s
}

// Serve accepts milter connections on ln until Shutdown or Close. It
// returns nil after a Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.srv.Serve(s.wrapListener(ln)); err != nil && !errors.Is(err, gomilter.ErrServerClosed) {
		return fmt.Errorf("milter: serve: %w", err)
	}
	return nil
}

// wrapListener adds buffered I/O and the session cap. The buffering wraps
// the raw connection (it needs the *net.TCPConn for TCP_QUICKACK); the
// limit wraps the result.
func (s *Server) wrapListener(ln net.Listener) net.Listener {
	l := &limitListener{Listener: bufferedListener{ln}, max: s.limits.maxSessions, pressureIdle: s.limits.pressureIdle,
		refused: s.refused, evicted: s.evicted}
	s.limit.Store(l)
	return l
}

// refused counts a connection refused at the cap.
func (s *Server) refused() {
	s.metrics.SessionRefused()
	s.refusedSince.Add(1)
	s.warnCap()
}

// evicted counts silent sessions closed to make room.
func (s *Server) evicted(n int) {
	s.metrics.SessionsEvicted(n)
	s.evictedSince.Add(int64(n))
	s.warnCap()
}

// warnCap says, at most once per capWarnInterval, what the cap cost since
// the last warning.
func (s *Server) warnCap() {
	now := time.Now().UnixNano()
	last := s.lastCapWarn.Load()
	if now-last < int64(capWarnInterval) || !s.lastCapWarn.CompareAndSwap(last, now) {
		return
	}
	refused, evicted := s.refusedSince.Swap(0), s.evictedSince.Swap(0)
	s.log.Warn("milter: session cap reached: silent sessions closed, connections refused (Postfix tempfails their mail); see docs/reliability.md",
		slog.Int64("cap", s.limits.maxSessions), slog.Duration("silent_for", s.limits.pressureIdle),
		slog.Int64("evicted", evicted), slog.Int64("refused", refused))
}

// sessionPanicked is go-milter's report of a panic it recovered in a
// session (which it ended, answering tempfail where Postfix waits).
func (s *Server) sessionPanicked(peer string, recovered any, stack []byte) {
	s.metrics.Panicked()
	s.log.Error("panic in milter session; session ended, its message tempfailed", slog.String("peer", peer),
		slog.Any("panic", recovered), slog.String("stack", string(stack)))
}

// Saturated reports why the server cannot take another session, or nil.
func (s *Server) Saturated() error {
	if l := s.limit.Load(); l != nil && l.full() {
		return fmt.Errorf("milter session cap reached (%d sessions open)", s.limits.maxSessions)
	}
	return nil
}

// protocolLog receives go-milter's warnings (malformed packets, read
// errors, recovered panics: each names its peer). go-milter has one
// package-wide hook; the daemon runs one Server, whose logger it is.
var protocolLog atomic.Pointer[slog.Logger]

func init() {
	gomilter.LogWarning = func(format string, v ...any) {
		if l := protocolLog.Load(); l != nil {
			l.Warn("milter protocol: " + fmt.Sprintf(format, v...))
		}
	}
}

// Shutdown stops accepting connections and waits for the sessions in
// flight to end, or for ctx to be done; then it closes what is left, and
// Postfix applies milter_default_action to those messages.
//
// Splits in progress stop handing over copies at once (their remaining
// recipients get the hidden original, so that the session ends well
// within the deadline); the records are closed only after every split
// has returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { close(s.stopping) })
	defer s.splitStores.close()
	if err := s.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("milter: shutdown: %w", err)
	}
	return nil
}

// Close stops the server at once, cutting sessions in flight.
func (s *Server) Close() error {
	s.stopOnce.Do(func() { close(s.stopping) })
	defer s.splitStores.close()
	return s.srv.Close()
}
