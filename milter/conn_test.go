package milter

import (
	"net"
	"testing"
)

// TestBufferedConnSeesTCP: TCP_QUICKACK is only set on a raw TCP
// connection, so the buffering must wrap it directly (Server.Serve puts the
// session limit outside); see docs/performance.md for what it is worth.
func TestBufferedConnSeesTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			c.Write([]byte("x"))
			c.Close()
		}
	}()
	c, err := bufferedListener{ln}.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.(*bufferedConn).quickAck {
		t.Fatal("quickAck not set for a TCP connection")
	}
	buf := make([]byte, 1)
	if _, err := c.Read(buf); err != nil || buf[0] != 'x' {
		t.Fatalf("read %q %v", buf, err)
	}
}
