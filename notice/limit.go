package notice

import (
	"strings"
	"sync"
	"time"
)

// limiter allows one notice per sender per interval. It lives as long as
// the daemon (a reload does not forget who was told), and forgets senders
// whose interval has passed, so that it stays as small as the number of
// senders told within one interval.
type limiter struct {
	mu   sync.Mutex
	last map[string]time.Time
	// sweep is when old entries are next removed.
	sweep time.Time
}

func newLimiter() *limiter { return &limiter{last: map[string]time.Time{}} }

// allow reports whether sender may get a notice at now, and if so records
// it. An interval of 0 always allows and records nothing.
func (l *limiter) allow(sender string, interval time.Duration, now time.Time) bool {
	if interval <= 0 {
		return true
	}
	key := strings.ToLower(sender)
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.After(l.sweep) {
		for k, t := range l.last {
			if now.Sub(t) >= interval {
				delete(l.last, k)
			}
		}
		l.sweep = now.Add(interval)
	}
	if t, ok := l.last[key]; ok && now.Sub(t) < interval {
		return false
	}
	if len(l.last) >= maxTrackedSenders {
		// More senders told within one interval than an organization
		// has staff: something floods; stay bounded, tell nobody new.
		return false
	}
	l.last[key] = now
	return true
}

// maxTrackedSenders bounds the limiter's memory.
const maxTrackedSenders = 100000

// forget lets sender have a notice again at once: its last one failed.
func (l *limiter) forget(sender string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.last, strings.ToLower(sender))
}
