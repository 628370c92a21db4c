package split

import (
	"crypto/sha256"
	"strings"

	"github.com/bccguard/bccguard/policy"
)

// Digest identifies a message across Postfix's retries.
type Digest [sha256.Size]byte

// MessageDigest is the digest of the envelope sender, the header and the
// body (bodySum, from Spool.BodySum). Received fields are left out: Postfix
// puts its own on top, with a new queue id and time on each attempt.
//
// Everything else counts. The sender's own Message-ID is what tells two
// messages with the same text apart, so a message is split only when it
// has one (Identifiable); fields that name this attempt's queue id (what
// a milter before bccguard may add, such as X-Rspamd-Queue-Id) are left
// out with StableFields.
func MessageDigest(sender string, header []policy.Field, bodySum []byte) Digest {
	h := sha256.New()
	h.Write([]byte(sender))
	h.Write([]byte{0})
	for _, f := range header {
		if strings.EqualFold(f.Name, "Received") {
			continue
		}
		h.Write([]byte(strings.ToLower(f.Name)))
		h.Write([]byte{':'})
		h.Write([]byte(f.Value))
		h.Write([]byte{0})
	}
	h.Write([]byte{0})
	h.Write(bodySum)
	var d Digest
	h.Sum(d[:0])
	return d
}

// Identifiable reports whether header identifies its message across
// Postfix's retries: it has a Message-ID, and not one Postfix made up for
// this attempt. Postfix adds a Message-ID built from the queue id
// (<date.QUEUEID@myhostname>) to mail without one from sendmail (PHP
// mail(), cron) and from clients in local_header_rewrite_clients; each
// retry then has another, and its copies would go out again. Clients
// outside that list get none at all: two alerts with the same text to the
// same people would pass for one message, and the second would reach
// nobody. Such messages are hidden instead of split.
func Identifiable(header []policy.Field, queueID string) bool {
	for _, f := range header {
		if strings.EqualFold(f.Name, "Message-ID") {
			v := strings.TrimSpace(f.Value)
			return v != "" && (queueID == "" || !strings.Contains(v, queueID))
		}
	}
	return false
}

// StableFields returns header without the fields that name queueID:
// those differ on each attempt.
func StableFields(header []policy.Field, queueID string) []policy.Field {
	if queueID == "" {
		return header
	}
	out := make([]policy.Field, 0, len(header))
	for _, f := range header {
		if !strings.Contains(f.Value, queueID) {
			out = append(out, f)
		}
	}
	return out
}
