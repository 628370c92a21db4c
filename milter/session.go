package milter

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/bccguard/bccguard/audit"
	"github.com/bccguard/bccguard/config"
	"github.com/bccguard/bccguard/notice"
	"github.com/bccguard/bccguard/policy"
)

// session handles one milter connection, which Postfix keeps for one SMTP
// session: several messages may follow each other on it.
type session struct {
	server *Server
	// cfg is the snapshot the session started with; a reload does not
	// change the rules in the middle of a session.
	cfg *config.Config

	// Per message; reset by MailFrom and Abort.
	sender string
	header policy.Collector
	// messageID is the Message-ID field, for the audit record: the queue
	// id of a local submission changes each time pickup retries it.
	messageID string
	// broken is set when a handler failed before end-of-message, so that
	// the message is refused rather than passed half-read.
	broken error
	// split holds what delivery: split needs (split.go).
	split splitState
	// original holds the fields a notice to the sender names (notify.go).
	original notice.Original
}

func newSession(s *Server) *session {
	return &session{server: s}
}

var _ gomilter.Milter = (*session)(nil)

func (s *session) reset() {
	s.sender = ""
	s.messageID = ""
	s.header.Reset()
	s.broken = nil
	s.split.reset()
	s.original.Reset()
}

// NewConnection takes the config snapshot for the session.
func (s *session) NewConnection(m gomilter.Modifier) error {
	if s.cfg == nil {
		s.server.metrics.SessionOpened()
	}
	s.cfg = s.server.config.Load()
	s.split.enabled = splitNegotiated(m)
	return nil
}

// Connect is not negotiated.
func (s *session) Connect(string, string, uint16, string, gomilter.Modifier) (*gomilter.Response, error) {
	return nil, nil
}

// Helo is not negotiated.
func (s *session) Helo(string, gomilter.Modifier) (*gomilter.Response, error) { return nil, nil }

// MailFrom starts a new message.
func (s *session) MailFrom(from string, esmtpArgs string, _ gomilter.Modifier) (*gomilter.Response, error) {
	s.reset()
	// go-milter removes the angle brackets Postfix sends.
	s.sender = from
	s.split.mailArgs = esmtpArgs
	return nil, nil
}

// RcptTo is negotiated only for delivery: split.
func (s *session) RcptTo(rcpt string, esmtpArgs string, _ gomilter.Modifier) (*gomilter.Response, error) {
	s.split.addRcpt(rcpt, esmtpArgs)
	return nil, nil
}

// Data is not negotiated.
func (s *session) Data(gomilter.Modifier) (*gomilter.Response, error) { return nil, nil }

// Header keeps the fields the policy reads, within its limits. Other
// fields are dropped here: edits address fields by their index among fields
// of the same name, so the others are not needed to place them.
func (s *session) Header(name, value string, _ gomilter.Modifier) (*gomilter.Response, error) {
	defer func() {
		if r := recover(); r != nil {
			s.broken = fmt.Errorf("panic in header handler: %v\n%s", r, debug.Stack())
		}
	}()
	s.header.Add(name, value)
	if s.messageID == "" && strings.EqualFold(name, "Message-Id") {
		s.messageID = messageID(value)
	}
	s.split.addHeader(name, value, s.cfg.Split.MaxMessageBytes)
	s.noteHeader(name, value)
	return nil, nil
}

// Headers is not negotiated.
func (s *session) Headers(gomilter.Modifier) (*gomilter.Response, error) { return nil, nil }

// BodyChunk is negotiated only for delivery: split; otherwise the body
// never crosses the socket.
func (s *session) BodyChunk(chunk []byte, _ gomilter.Modifier) (*gomilter.Response, error) {
	defer func() {
		if r := recover(); r != nil {
			s.broken = fmt.Errorf("panic in body handler: %v\n%s", r, debug.Stack())
		}
	}()
	s.bodyChunk(chunk)
	return nil, nil
}

// EndOfMessage decides and applies the edits.
func (s *session) EndOfMessage(m gomilter.Modifier) (resp *gomilter.Response, err error) {
	start := time.Now()
	ctx := context.Background()
	queueID := m.Get(gomilter.MacroQueueId)
	defer func() {
		// A panic must not kill the daemon and every session with it, and
		// must not let the message pass with its To intact: refuse it
		// for now, Postfix will try again.
		if r := recover(); r != nil {
			s.server.metrics.Panicked()
			s.server.log.Error("panic while deciding; message tempfailed", slog.String("queue_id", queueID),
				slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
			resp, err = tempfail("internal error")
		}
	}()
	if s.broken != nil {
		s.server.metrics.Panicked()
		s.server.log.Error("message tempfailed", slog.String("queue_id", queueID), slog.Any("error", s.broken))
		return tempfail("internal error")
	}
	d := s.decision()
	edits := d.Edits
	var split *splitResult
	if splitPlanned(d) {
		res, err := s.carryOutSplit(m, queueID, d)
		if err != nil {
			s.server.log.Error("cannot remove a recipient; Postfix applies milter_default_action",
				slog.String("queue_id", queueID), slog.Any("error", err))
			return nil, fmt.Errorf("milter: end of message: %w", err)
		}
		split, edits = &res, res.edits
		if res.discard {
			// Every recipient has a copy of their own.
			edits = nil
		}
	}
	for _, e := range edits {
		if err := applyEdit(m, e); err != nil {
			// The connection to Postfix is broken; Postfix applies
			// milter_default_action (tempfail) to the message.
			s.server.log.Error("cannot send header change; Postfix applies milter_default_action",
				slog.String("queue_id", queueID), slog.Any("error", err))
			return nil, fmt.Errorf("milter: end of message: %w", err)
		}
	}
	took := time.Since(start)
	s.server.metrics.Decided(d, took)
	s.server.origins.check(ctx, s.server.log, queueID, d)
	rec := audit.Record{QueueID: queueID, MessageID: s.messageID, Sender: s.sender, Decision: d, Duration: took}
	if split != nil && split.audit != nil {
		rec.Split = split.audit
		rec.Split.Discarded = split.discard
	}
	rec.Notice = s.notify(queueID, d, deliveryOf(d, split))
	audit.Log(ctx, s.server.log, s.cfg.Audit, rec)
	if d.Action == policy.Tempfail {
		return tempfail(d.Reason)
	}
	if split != nil && split.discard {
		return gomilter.RespDiscard, nil
	}
	return gomilter.RespAccept, nil
}

// maxMessageIDBytes bounds the Message-ID kept for the audit record.
const maxMessageIDBytes = 256

// messageID cleans a Message-ID value for the log: one line, bounded.
func messageID(v string) string {
	v = strings.Join(strings.Fields(v), " ")
	if len(v) > maxMessageIDBytes {
		v = v[:maxMessageIDBytes]
	}
	return v
}

func applyEdit(m gomilter.Modifier, e policy.Edit) error {
	if e.Op == policy.EditAdd {
		return m.AddHeader(e.Name, e.Value)
	}
	return m.ChangeHeader(e.Index, e.Name, e.Value)
}

// tempfail refuses the message with 451 and a text that tells the admin
// reading the client's bounce where to look.
func tempfail(why string) (*gomilter.Response, error) {
	why = strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return ' '
		}
		return r
	}, why)
	return gomilter.RejectWithCodeAndReason(451, "4.7.0 bccguard: "+why+"; try again later")
}

// Abort forgets the current message.
func (s *session) Abort(gomilter.Modifier) error {
	s.reset()
	return nil
}

// Unknown is not negotiated.
func (s *session) Unknown(string, gomilter.Modifier) (*gomilter.Response, error) { return nil, nil }

// Cleanup ends the session.
func (s *session) Cleanup(gomilter.Modifier) {
	if s.cfg != nil {
		s.server.metrics.SessionClosed()
	}
	// A body spooled for a split of a message cut short.
	s.split.reset()
}
