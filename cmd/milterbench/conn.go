package main

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"time"
)

// ParseAddr splits a milter address in Postfix's syntax, inet:HOST:PORT or
// unix:/path, into a network ("tcp" or "unix") and an address for net.Dial.
func ParseAddr(s string) (network, address string, err error) {
	kind, rest, ok := strings.Cut(s, ":")
	if !ok || rest == "" {
		return "", "", fmt.Errorf("%q: want inet:HOST:PORT or unix:/path", s)
	}
	switch kind {
	case "inet":
		if _, _, err := net.SplitHostPort(rest); err != nil {
			return "", "", fmt.Errorf("%q: %w", s, err)
		}
		return "tcp", rest, nil
	case "unix", "local":
		return "unix", rest, nil
	}
	return "", "", fmt.Errorf("%q: unknown transport %q; want inet or unix", s, kind)
}

// ioBufSize is Postfix's VSTREAM_BUFSIZE.
const ioBufSize = 4096

// bufferedDialer gives go-milter's client connections that buffer like
// Postfix's milter client: writes collect in a buffer that is sent when
// full or when the client waits for a reply, and reads are buffered too.
// go-milter alone makes two write system calls per packet and two reads per
// reply, which on a small machine takes CPU from the filter under test.
//
// A dialer belongs to one session and remembers its current connection.
type bufferedDialer struct {
	timeout time.Duration
	// nagle leaves Nagle's algorithm on, as Postfix does; Go turns it off.
	nagle bool
	conn  *bufferedConn
}

// Dial implements milter.Dialer.
func (d *bufferedDialer) Dial(network, address string) (net.Conn, error) {
	c, err := net.DialTimeout(network, address, d.timeout)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok && d.nagle {
		if err := tc.SetNoDelay(false); err != nil {
			c.Close()
			return nil, fmt.Errorf("turn on Nagle's algorithm: %w", err)
		}
	}
	raw := &deadlineConn{Conn: c, timeout: d.timeout}
	d.conn = &bufferedConn{
		Conn: c,
		r:    bufio.NewReaderSize(raw, ioBufSize),
		w:    bufio.NewWriterSize(raw, ioBufSize),
	}
	return d.conn, nil
}

// deadlineConn sets a deadline before every system call, since go-milter's
// own per-packet deadlines are turned off.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

// Read flushes what is buffered first: the client reads only when it waits
// for a reply to what it wrote.
func (c *bufferedConn) Read(p []byte) (int, error) {
	if c.w.Buffered() > 0 {
		if err := c.w.Flush(); err != nil {
			return 0, err
		}
	}
	return c.r.Read(p)
}

func (c *bufferedConn) Write(p []byte) (int, error) { return c.w.Write(p) }

// Flush sends what is buffered.
func (c *bufferedConn) Flush() error { return c.w.Flush() }

// Close sends what is buffered (the final Quit) and closes.
func (c *bufferedConn) Close() error {
	ferr := c.w.Flush()
	if err := c.Conn.Close(); err != nil {
		return err
	}
	return ferr
}
