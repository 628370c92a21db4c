package milter

import (
	"context"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/bccguard/bccguard/internal/miltertest"
)

func rawPacket(code byte, data ...string) []byte {
	body := []byte{code}
	for _, d := range data {
		body = append(append(body, d...), 0)
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// TestShutdownWithPeerThatNeverReads: a local client pipelines messages
// and never reads the replies, until the socket buffers are full. The
// buffered replies must not block the session (or Shutdown, which waits
// for it) for ever: flushes have a deadline, and Close does not wait for
// a flush in progress.
func TestShutdownWithPeerThatNeverReads(t *testing.T) {
	addr, _, srv := startServer(t, cityPolicy(t, nil))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(miltertest.RawNegotiation())
	go func() {
		for {
			c.Write(rawPacket('M', "<staff@city.example.jp>"))
			c.Write(rawPacket('L', "To", "a@ext.example, b@ext2.example"))
			if _, err := c.Write(rawPacket('E')); err != nil {
				return
			}
		}
	}()
	time.Sleep(2 * time.Second) // long enough to fill both socket buffers
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		// A hang detector, not a speed check: the flush deadline is 10 s.
		t.Fatal("Shutdown blocked by a session whose peer does not read")
	}
}
