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
// Everything else counts, also a Message-ID or Date that Postfix adds to a
// message without one (for clients in local_header_rewrite_clients): each
// attempt of such a message then has its own digest, and a retry after a
// crash may give second copies. Leaving those out instead would let two
// different messages with the same text, sent within a second, pass for a
// retry, and the second would reach nobody: a duplicate is the lesser
// harm. Mail clients always write both fields.
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
