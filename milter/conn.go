package milter

import (
	"bufio"
	"net"
	"sync"
	"time"
)

// bufferedListener hands go-milter connections with buffered I/O.
//
// go-milter reads each packet with two read calls (length, then body) and
// writes each reply with two write calls; on a busy server those syscalls
// cost more than the decision. Reads go through a buffer, and writes are
// collected and flushed before the next read: the milter protocol is
// request and reply, so a reply is always followed by a read (or by Close,
// which flushes too) and nothing waits in the buffer.
type bufferedListener struct {
	net.Listener
}

func (l bufferedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newBufferedConn(c), nil
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
	// mu guards w: Shutdown may Close from another goroutine while the
	// session writes.
	mu sync.Mutex
	w  *bufio.Writer
	// quickAck is set for TCP connections, see quickAck.
	quickAck bool
	// peer is what go-milter's warnings name the connection by (see
	// peerOf).
	peer net.Addr
}

func newBufferedConn(c net.Conn) *bufferedConn {
	_, isTCP := c.(*net.TCPConn)
	// Small buffers: a large packet (a long To) is read straight into
	// go-milter's own buffer, and 500 idle sessions stay cheap.
	return &bufferedConn{Conn: c, r: bufio.NewReaderSize(c, 4<<10), w: bufio.NewWriterSize(c, 2<<10), quickAck: isTCP, peer: peerOf(c)}
}

// RemoteAddr names the peer, a local process's pid and uid for a unix
// socket.
func (c *bufferedConn) RemoteAddr() net.Addr { return c.peer }

func (c *bufferedConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	err := c.flush(flushTimeout)
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if c.quickAck && c.r.Buffered() == 0 {
		// Postfix writes several packets without waiting for a reply
		// (header fields, end-of-message), with Nagle's algorithm on: its
		// second write waits for the ACK of the first, which the kernel
		// here would delay by up to 40 ms since there is no reply to
		// carry it. Linux resets TCP_QUICKACK after a while, so it is set
		// again before each read that will block.
		quickAck(c.Conn)
	}
	return c.r.Read(p)
}

// flushTimeout bounds a flush of buffered replies, as go-milter bounds
// its own writes: a peer that stops reading must not hold the session
// (and Shutdown, which waits for it) forever.
const flushTimeout = 10 * time.Second

// flush writes what is buffered, within timeout; c.mu must be held.
func (c *bufferedConn) flush(timeout time.Duration) error {
	if c.w.Buffered() == 0 {
		return nil
	}
	c.Conn.SetWriteDeadline(time.Now().Add(timeout))
	err := c.w.Flush()
	c.Conn.SetWriteDeadline(time.Time{})
	return err
}

func (c *bufferedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w.Write(p)
}

// Close flushes what it can without waiting: when another goroutine is
// writing (Shutdown cutting a session), closing the socket is what ends
// that write.
func (c *bufferedConn) Close() error {
	if c.mu.TryLock() {
		c.flush(time.Second)
		c.mu.Unlock()
	}
	return c.Conn.Close()
}
