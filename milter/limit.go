package milter

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// limitListener caps the connections open at once.
//
// When the cap is nearly reached, a new connection first makes room by
// closing the sessions that have sent nothing for pressureIdle: a crowd
// of silent connections from a local process then gives way to Postfix,
// whose sessions talk. A connection that still finds no room is closed at
// once rather than left waiting in the backlog: Postfix sees the failure
// immediately and applies milter_default_action (tempfail), instead of
// waiting milter_connect_timeout per message.
type limitListener struct {
	net.Listener
	max int64
	// pressureIdle is how long a session may stay silent once the
	// listener is at nine tenths of max.
	pressureIdle time.Duration
	// refused is called for each connection refused, evicted with the
	// number of silent sessions closed to make room; both outside the lock.
	refused func()
	evicted func(n int)

	mu    sync.Mutex
	conns map[*limitedConn]struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if int64(len(l.conns))*10 >= l.max*9 {
			if n := l.evictSilentLocked(); n > 0 {
				l.mu.Unlock()
				l.evicted(n)
				l.mu.Lock()
			}
		}
		if int64(len(l.conns)) >= l.max {
			l.mu.Unlock()
			// Counted before the close, so that whoever sees the
			// close also sees the count.
			l.refused()
			c.Close()
			continue
		}
		lc := &limitedConn{Conn: c, l: l}
		lc.lastRead.Store(time.Now().UnixNano())
		if l.conns == nil {
			l.conns = make(map[*limitedConn]struct{})
		}
		l.conns[lc] = struct{}{}
		l.mu.Unlock()
		return lc, nil
	}
}

// evictSilentLocked closes every session silent for pressureIdle and
// returns how many; l.mu must be held. The sessions end on their own when
// their next read fails.
func (l *limitListener) evictSilentLocked() int {
	cutoff := time.Now().Add(-l.pressureIdle).UnixNano()
	n := 0
	for c := range l.conns {
		if c.lastRead.Load() <= cutoff {
			delete(l.conns, c)
			c.Conn.Close()
			n++
		}
	}
	return n
}

// full reports whether every slot is taken.
func (l *limitListener) full() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int64(len(l.conns)) >= l.max
}

// limitedConn holds a slot until its first Close, and records when its
// peer last sent something.
type limitedConn struct {
	net.Conn
	l        *limitListener
	lastRead atomic.Int64 // Unix nanoseconds
}

func (c *limitedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.lastRead.Store(time.Now().UnixNano())
	}
	return n, err
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return err
}
