package audit

import (
	"context"
	"log/slog"
	"strings"
)

// NoticeRecord is what became of one notice to a sender (see package
// notice); it is joined with the decision record by queue id.
type NoticeRecord struct {
	// QueueID is the original message's queue id.
	QueueID string
	// Sender is the envelope sender the notice went to.
	Sender string
	// Kind is "converted" or "dry-run".
	Kind string
	// Result is "sent", "failed" or "dropped" (still queued at shutdown).
	Result string
	// Copies is the number of notify_copy_to recipients.
	Copies int
	// Attempts is how many hand-overs were tried.
	Attempts int
	// Err is the last error; nil when sent.
	Err error
}

// LogNotice writes the record: sent at info, anything else at warn.
func LogNotice(ctx context.Context, log *slog.Logger, o Options, r NoticeRecord) {
	level := slog.LevelInfo
	if r.Result != "sent" {
		level = slog.LevelWarn
	}
	if !log.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 8)
	attrs = append(attrs, slog.String("queue_id", r.QueueID), slog.String("result", r.Result), slog.String("kind", r.Kind))
	if s := o.address(r.Sender); s != "" {
		attrs = append(attrs, slog.String("sender", s))
	}
	attrs = append(attrs, slog.Int("copies", r.Copies), slog.Int("attempts", r.Attempts))
	if r.Err != nil {
		msg := r.Err.Error()
		if o.Mode != ModeFull {
			// A refused RCPT names the address in the error.
			msg = redactAddresses(msg)
		}
		attrs = append(attrs, slog.String("error", msg))
	}
	log.LogAttrs(ctx, level, "notice", attrs...)
}

// redactAddresses replaces every <...@...> in s with <redacted>.
func redactAddresses(s string) string {
	var b strings.Builder
	for {
		open := strings.IndexByte(s, '<')
		if open < 0 {
			break
		}
		end := strings.IndexByte(s[open:], '>')
		if end < 0 {
			break
		}
		b.WriteString(s[:open])
		if inner := s[open+1 : open+end]; strings.Contains(inner, "@") {
			b.WriteString("<redacted>")
		} else {
			b.WriteString(s[open : open+end+1])
		}
		s = s[open+end+1:]
	}
	b.WriteString(s)
	return b.String()
}
