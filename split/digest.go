package split

import (
	"crypto/sha256"
	"strings"

	"github.com/bccguard/bccguard/policy"
)

// Digest identifies a message across Postfix's retries.
type Digest [sha256.Size]byte

// MessageDigest is the digest of the envelope sender, the header and the
// body (bodySum, from Spool.BodySum). Header fields that differ between
// two deliveries of the same message are left out: every Received field
// (Postfix puts its own, with its new queue id and time, on top) and any
// field holding this attempt's queue id (a Message-ID Postfix made up for
// a message without one).
func MessageDigest(sender string, header []policy.Field, queueID string, bodySum []byte) Digest {
	h := sha256.New()
	h.Write([]byte(sender))
	h.Write([]byte{0})
	for _, f := range header {
		if strings.EqualFold(f.Name, "Received") || queueID != "" && strings.Contains(f.Value, queueID) {
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
