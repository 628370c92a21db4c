package milter

import (
	"net"
	"sync"
	"sync/atomic"
)

// limitListener caps the connections open at once. A connection over the
// cap is closed at once rather than left waiting in the backlog: Postfix
// then sees the failure immediately and applies milter_default_action
// (tempfail), instead of waiting milter_connect_timeout per message while
// idle connections from a local process hold every slot.
type limitListener struct {
	net.Listener
	max    int64
	active atomic.Int64
	// refused is called, outside any lock, for each connection refused.
	refused func()
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.active.Add(1) > l.max {
			l.active.Add(-1)
			c.Close()
			l.refused()
			continue
		}
		return &limitedConn{Conn: c, release: func() { l.active.Add(-1) }}, nil
	}
}

// full reports whether every slot is taken.
func (l *limitListener) full() bool { return l.active.Load() >= l.max }

// limitedConn gives its slot back on the first Close.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
