package milter

import (
	"bytes"
	"context"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/bccguard/bccguard/config"
	"github.com/bccguard/bccguard/notice"
	"github.com/bccguard/bccguard/policy"
	"github.com/bccguard/bccguard/reinject"
)

// SetNotifier makes the server tell senders about conversions through n,
// for rules with notify_sender; without one (nil, the default) no notice
// is sent. Call it before Serve.
func (s *Server) SetNotifier(n *notice.Notifier) { s.notifier = n }

// noteHeader keeps the fields a notice names (Subject, Date, Message-ID).
func (s *session) noteHeader(name, value string) {
	if s.server.notifier != nil && s.cfg.Notice != nil && s.cfg.Notice.Used {
		s.original.Add(name, value)
	}
}

// notify queues the notice a decision calls for and returns what the
// audit record says about it ("" when none is due). delivery is how the
// message was converted: "hide", or "split" when copies were handed over.
// It never blocks and never changes the reply to Postfix: the original
// goes on whatever becomes of the notice.
func (s *session) notify(queueID string, d policy.Decision, delivery string) string {
	if s.server.notifier == nil || s.cfg.Notice == nil || !notice.Wanted(d, s.sender) {
		return ""
	}
	return string(s.server.notifier.Notify(notice.Request{
		Event: notice.Event{
			QueueID:  queueID,
			Sender:   s.sender,
			Original: s.original,
			Decision: d,
			Delivery: delivery,
		},
		Settings: s.cfg.Notice,
		Handoff:  Handoff(s.cfg.Reinject),
		Audit:    s.cfg.Audit,
	}))
}

// deliveryOf says how a converted message reached the moved recipients,
// for the notice: "split" when every copy was handed over (a dry run of a
// split rule: when copies would be made), "hide" otherwise, also when a
// split fell back to hiding for some or all recipients.
func deliveryOf(d policy.Decision, split *splitResult) string {
	switch {
	case split != nil && split.audit != nil:
		if split.audit.Copies > 0 && split.audit.Fallback == "" {
			return string(policy.DeliverySplit)
		}
	case d.DryRun && d.Delivery == policy.DeliverySplit:
		return string(policy.DeliverySplit)
	}
	return string(policy.DeliveryHide)
}

// Handoff hands notices to Postfix's reinjection service r, which runs no
// milters: a notice never comes back through bccguard. The envelope
// sender is null, so that a notice can never bounce back and loop.
func Handoff(r config.Reinject) notice.Handoff {
	return func(ctx context.Context, rcpts []string, data []byte) error {
		// The body is UTF-8 sent as 8bit: say so (RFC 6152), or a strict
		// Postfix (strict_8bitmime) may refuse or convert it.
		tx := reinject.Transaction{Message: bytes.NewReader(data)}
		tx.Mail.Body = smtp.Body8BitMIME
		for _, a := range rcpts {
			tx.Rcpts = append(tx.Rcpts, reinject.Rcpt{Addr: a})
			if !ascii(a) {
				tx.Mail.SMTPUTF8 = true
			}
		}
		res := reinject.Send(ctx, reinject.Options{Address: r.Address, Timeout: r.Timeout}, []reinject.Transaction{tx})
		if !res[0].HandedOver {
			return res[0].Err
		}
		return nil
	}
}

func ascii(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r >= 0x80 })
}
