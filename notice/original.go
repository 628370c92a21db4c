package notice

import (
	"mime"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/mail"

	"github.com/bccguard/bccguard/policy"
)

// maxFieldBytes bounds each original field kept for the notice: a notice
// names the message, it does not need a subject of 100 KiB.
const maxFieldBytes = 2 << 10

// Original holds the fields of the original message a notice names. The
// milter session offers it every header field; it keeps the first
// Subject, Date and Message-ID, within maxFieldBytes each.
type Original struct {
	Subject, Date, MessageID string
}

// Add offers one header field as the milter receives it.
func (o *Original) Add(name, value string) {
	var dst *string
	switch {
	case strings.EqualFold(name, "Subject"):
		dst = &o.Subject
	case strings.EqualFold(name, "Date"):
		dst = &o.Date
	case strings.EqualFold(name, "Message-ID"):
		dst = &o.MessageID
	default:
		return
	}
	if *dst == "" {
		if len(value) > maxFieldBytes {
			// A copy, so that the whole value is not kept alive.
			value = strings.Clone(value[:maxFieldBytes])
		}
		*dst = value
	}
}

// Reset forgets the fields, for the next message.
func (o *Original) Reset() { *o = Original{} }

// wordDecoder decodes RFC 2047 words in the charsets Japanese mail uses
// (ISO-2022-JP, Shift_JIS, EUC-JP) as well as UTF-8.
var wordDecoder = mime.WordDecoder{CharsetReader: charset.Reader}

// maxSubjectRunes bounds the subject as shown in the notice.
const maxSubjectRunes = 200

// decodedSubject returns the subject decoded and on one line; a subject
// that does not decode is shown as written.
func (o Original) decodedSubject() string {
	s, err := wordDecoder.DecodeHeader(o.Subject)
	if err != nil {
		s = o.Subject
	}
	s = oneLine(s)
	if utf8.RuneCountInString(s) > maxSubjectRunes {
		s = string([]rune(s)[:maxSubjectRunes]) + "…"
	}
	return s
}

// messageID returns the original's Message-ID without angle brackets, or
// "" when it has none that parses.
func (o Original) messageID() string {
	if o.MessageID == "" {
		return ""
	}
	var h mail.Header
	h.Set("Message-Id", o.MessageID)
	id, err := h.MessageID()
	if err != nil || id == "" || len(id) > 250 || strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return ""
	}
	return id
}

// oneLine makes a header value safe to print on one line: invalid UTF-8
// (a raw Shift_JIS subject, say) and control characters become spaces,
// and runs of white space one space.
func oneLine(s string) string {
	s = strings.ToValidUTF8(s, " ")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// Event is one conversion to tell a sender about.
type Event struct {
	// QueueID is the original's Postfix queue id.
	QueueID string
	// Sender is the envelope sender, without angle brackets.
	Sender string
	// Original holds the original's fields.
	Original Original
	// Decision is the policy's decision on the original.
	Decision policy.Decision
	// Delivery is "hide" or "split".
	Delivery string
}

// detached returns the event holding only what a notice needs, copied:
// a queued notice must not keep a message's whole address fields alive.
func (e Event) detached(listRecipients bool) Event {
	d := e.Decision
	d.Edits, d.Copies, d.SplitEdits = nil, nil, nil
	to := d.To
	d.To = nil
	if listRecipients {
		for _, a := range to {
			d.To = append(d.To, policy.Address{Addr: strings.Clone(a.Addr), Internal: a.Internal})
		}
	}
	e.Decision = d
	return e
}

// Wanted reports whether the decision calls for a notice: a conversion
// (dry-run included) under a rule with notify_sender, from a real sender
// of the organization's own domains (a domains entry or internal_domains).
// Passes never do, hence exempt senders and the null sender never do; nor
// does the catch-all rule of a config without domains, which would send
// notices to forged outside senders (backscatter).
func Wanted(d policy.Decision, sender string) bool {
	return d.Action == policy.Convert && d.Settings.NotifySender && d.Rule != "default" && strings.Trim(sender, "<> ") != ""
}

// data fills in the template fields.
func (e Event) data(s *Settings) Data {
	d := e.Decision
	delivery := e.Delivery
	if delivery == "" {
		delivery = "hide"
	}
	out := Data{
		DryRun:    d.DryRun,
		Subject:   e.Original.decodedSubject(),
		Date:      oneLine(e.Original.Date),
		MessageID: e.Original.messageID(),
		QueueID:   e.QueueID,
		Sender:    e.Sender,
		Hidden:    d.Moved,
		Delivery:  delivery,
		ConvertCc: d.Settings.ConvertCc,
		Rule:      d.Rule,
		Contact:   s.From.Address,
		CopyTo:    recipients(e.Sender, d.Settings.NotifyCopyTo)[1:],
	}
	if s.ListRecipients {
		out.Recipients = hiddenTo(d)
	}
	return out
}

// hiddenTo lists the To addresses that leave the header: all of them, or
// the external ones under move: external.
func hiddenTo(d policy.Decision) []string {
	var out []string
	for _, a := range d.To {
		if d.Settings.Move == policy.MoveExternal && a.Internal && d.Parse == policy.ParseOK {
			continue
		}
		out = append(out, oneLine(a.Addr))
	}
	return out
}
