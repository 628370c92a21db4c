// Package split carries out a split decision: it hands each recipient's
// copy of a message back to Postfix (package reinject) and keeps a durable
// record of every copy Postfix accepted, so that a retry of the same
// message after a crash makes no second copy.
//
// The record is keyed by a digest of the envelope sender, the header and
// the body (Digest) and by recipient, and written (fsync'd by bbolt) right
// after Postfix's 250 to the copy's DATA. One window left is a crash
// between that 250 and the end of the record's commit: the retry then
// sends that recipient a second copy. The other is a reply to a final dot
// that never arrives within reinject.timeout although Postfix queued the
// copy: its recipient also stays on the original. The split's deadline
// does not cause that (Run). docs/reliability.md has the figures.
//
// Feasible holds the checks made before any copy, shared with
// `bccguard check`.
package split
