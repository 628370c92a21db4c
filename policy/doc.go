// Package policy decides whether a message's visible recipient list must be
// hidden, and how.
//
// It is pure: an envelope sender, the header fields and an immutable
// [Config] go in; a [Decision] with the header edits comes out. It knows
// nothing about milters or Postfix, so that the daemon and `bccguard check`
// run exactly the same code, and so that every rule can be table-tested.
//
// The rule follows the city hall policy bccguard was written for: when the
// To header fields together hold at least Threshold addresses and at least
// one of them is external (not one of the organization's own domains), the
// To addresses are removed from the visible header. The envelope is never
// touched, so every recipient still gets the message; Cc stays visible
// unless ConvertCc is set, because staff use Cc on purpose when recipients
// should see each other.
package policy
