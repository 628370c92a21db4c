package split

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/bccguard/bccguard/config"
	"github.com/bccguard/bccguard/policy"
)

// Why a split the policy decided is hidden instead, before any copy is
// made (the audit's split_fallback, bccguard_split_fallbacks_total's
// reason).
const (
	ReasonMaxRecipients   = "max_recipients"
	ReasonMaxMessageBytes = "max_message_bytes"
	ReasonMessageID       = "message_id"
)

// Message is what Feasible needs to know of a message.
type Message struct {
	// Copies is the number of copies the policy decided.
	Copies int
	// Size is the header and the body in bytes, each field counted by
	// FieldSize and the body with CRLF line endings (BodySize), as the
	// milter receives them.
	Size int64
	// Header is every header field, in order.
	Header []policy.Field
	// QueueID is Postfix's queue id; "" when not known (bccguard check).
	QueueID string
}

// Feasible reports whether a split the policy decided can be carried out
// under c, and if not, why (a Reason… constant and the details): more
// copies than split.max_recipients, a message over
// split.max_message_bytes, or no Message-ID of the sender's own
// (Identifiable). The daemon asks before it hands over any copy, and
// `bccguard check` asks the same, so that check shows what the daemon
// does. What only the daemon can meet (no split negotiated on the milter
// connection, more envelope recipients than it keeps, records or spool
// unusable, a shutdown, the reinjection service down) is not asked here.
func Feasible(c config.Split, m Message) (reason string, err error) {
	switch {
	case m.Copies > c.MaxRecipients:
		return ReasonMaxRecipients, fmt.Errorf("%d copies, split.max_recipients is %d", m.Copies, c.MaxRecipients)
	case m.Size > c.MaxMessageBytes:
		return ReasonMaxMessageBytes, fmt.Errorf("over split.max_message_bytes (%d)", c.MaxMessageBytes)
	case !Identifiable(m.Header, m.QueueID):
		return ReasonMessageID, errors.New("no Message-ID of the sender's own: a retry could not be told from a new message")
	}
	return "", nil
}

// FieldSize is what one header field counts towards
// split.max_message_bytes: "Name: value" and CRLF.
func FieldSize(name, value string) int64 {
	return int64(len(name) + len(value) + 4)
}

// BodySize is what body, read from a file with LF or CRLF line endings,
// counts towards split.max_message_bytes: Postfix hands the milter every
// line ended with CRLF.
func BodySize(body []byte) int64 {
	var n int64
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		if l := len(line); l > 0 && line[l-1] == '\r' {
			line = line[:l-1]
		}
		n += int64(len(line)) + 2
	}
	return n
}
