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
	"sync/atomic"
	"time"

	gomilter "github.com/d--j/go-milter"
	"golang.org/x/net/netutil"

	"github.com/bccguard/bccguard/config"
	"github.com/bccguard/bccguard/metrics"
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

// MaxSessions caps the milter sessions served at once; further connections
// wait in the listen backlog (Postfix then applies milter_connect_timeout
// and milter_default_action), so that idle connections from a local user
// cannot exhaust the daemon's file descriptors.
const MaxSessions = 2000

// sessionIdleTimeout ends a session that sends nothing for this long, so
// that dead connections do not pile up. Postfix sends nothing between MAIL
// FROM and the header fields, which it passes only after the whole DATA
// has arrived: a large message over a slow link can take an hour, so it is
// generous.
const sessionIdleTimeout = 3 * time.Hour

// Server is a milter server that applies the current config snapshot.
type Server struct {
	config  *atomic.Pointer[config.Config]
	log     *slog.Logger
	metrics *metrics.Metrics
	srv     *gomilter.Server
	// decide is policy.Decide; tests replace it before serving to reach
	// the panic path.
	decide func(*policy.Config, policy.Message) policy.Decision
	// splitStores are the records of delivery: split (split.go).
	splitStores splitStores
}

// NewServer returns a server reading the config from c at the start of
// every milter session; swap the pointer to reload. A nil logger discards
// logs; nil metrics are not collected.
func NewServer(c *atomic.Pointer[config.Config], log *slog.Logger, m *metrics.Metrics) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = metrics.New("")
	}
	s := &Server{config: c, log: log, metrics: m, decide: policy.Decide}
	s.srv = gomilter.NewServer(
		gomilter.WithDynamicMilter(func(uint32, gomilter.OptAction, gomilter.OptProtocol, gomilter.DataSize) gomilter.Milter {
			return newSession(s)
		}),
		gomilter.WithActions(Actions),
		gomilter.WithReadTimeout(sessionIdleTimeout),
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
	if err := s.srv.Serve(wrapListener(ln)); err != nil && !errors.Is(err, gomilter.ErrServerClosed) {
		return fmt.Errorf("milter: serve: %w", err)
	}
	return nil
}

// wrapListener adds buffered I/O and the session cap. The buffering wraps
// the raw connection (it needs the *net.TCPConn for TCP_QUICKACK); the
// limit wraps the result.
func wrapListener(ln net.Listener) net.Listener {
	return netutil.LimitListener(bufferedListener{ln}, MaxSessions)
}

// Shutdown stops accepting connections and waits for the sessions in
// flight to end, or for ctx to be done; then it closes what is left, and
// Postfix applies milter_default_action to those messages.
func (s *Server) Shutdown(ctx context.Context) error {
	defer s.splitStores.close()
	if err := s.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("milter: shutdown: %w", err)
	}
	return nil
}

// Close stops the server at once, cutting sessions in flight.
func (s *Server) Close() error {
	defer s.splitStores.close()
	return s.srv.Close()
}
