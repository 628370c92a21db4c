package milter

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/bccguard/bccguard/policy"
)

// originWarnEvery bounds the unqualified-origin warning to one per domain
// per hour: it is about configuration, not about one message.
const originWarnEvery = time.Hour

// maxOriginDomains bounds the memory of the warning: an SMTP client may
// send any number of made-up dotless domains. When that many were warned
// about within the hour, a further new domain is not warned about until
// older entries are an hour old (the warning is about configuration, and
// the first 1024 domains already show it); known domains keep their
// hourly warning.
const maxOriginDomains = 1024

// originWarner spots sender domains that are almost always an unqualified
// local origin: a name without a dot ("vm", "localhost") or the machine's
// own host name. Postfix gives mail submitted without -f the sender
// user@$myorigin, and on many installs myorigin = $myhostname, a name no
// rule covers: such mail passes unchecked and, at the default log level,
// silently.
type originWarner struct {
	host string
	now  func() time.Time

	mu   sync.Mutex
	last map[string]time.Time
}

func newOriginWarner() *originWarner {
	host, _ := os.Hostname()
	return &originWarner{host: strings.ToLower(host), now: time.Now, last: map[string]time.Time{}}
}

// unqualified reports whether a normalized sender domain looks like a
// local origin.
func (w *originWarner) unqualified(domain string) bool {
	return domain != "" && (!strings.Contains(domain, ".") || domain == w.host)
}

// due reports whether domain is to be warned about now, and notes it.
func (w *originWarner) due(domain string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	if t, ok := w.last[domain]; ok && now.Sub(t) < originWarnEvery {
		return false
	}
	if len(w.last) >= maxOriginDomains {
		for d, t := range w.last {
			if now.Sub(t) >= originWarnEvery {
				delete(w.last, d)
			}
		}
		if len(w.last) >= maxOriginDomains {
			return false
		}
	}
	w.last[domain] = now
	return true
}

// check logs the warning for a decision whose sender domain looks like
// an unqualified local origin, at most once an hour per domain. It names
// the domain, never the address.
func (w *originWarner) check(ctx context.Context, log *slog.Logger, queueID string, d policy.Decision) {
	// Only a domain that no rule covers (or one turned off) lets mail
	// through unchecked; a rule for "vm" is the admin's choice.
	if d.Passed != policy.PassSenderNotCovered && d.Passed != policy.PassSenderDisabled {
		return
	}
	if !w.unqualified(d.SenderDomain) || !log.Enabled(ctx, slog.LevelWarn) || !w.due(d.SenderDomain) {
		return
	}
	passed := string(d.Passed)
	log.LogAttrs(ctx, slog.LevelWarn, "sender domain looks like an unqualified local origin: mail submitted without -f gets $myorigin as its sender domain; set myorigin in main.cf to the organization's mail domain (bccguard doctor checks it); logged once an hour per domain",
		slog.String("queue_id", queueID), slog.String("sender_domain", d.SenderDomain),
		slog.String("action", d.Action.String()), slog.String("passed", passed))
}
