package audit

import "strings"

// messageID renders the Message-ID for the record. Its right-hand side is
// usually the sender's domain or host and may be an address-like string,
// so that only recipients: full logs it whole; every other mode logs the
// part before the first "@" (the unique part, without brackets), which
// keeps the log free of "@" and still finds the message: Postfix's
// cleanup logs message-id=<LOCAL@...>, so grep for LOCAL.
func (o Options) messageID(id string) string {
	if o.Mode == ModeFull {
		return id
	}
	id = strings.TrimLeft(strings.TrimSpace(id), "<")
	id, _, _ = strings.Cut(id, "@")
	return strings.TrimRight(id, ">")
}
