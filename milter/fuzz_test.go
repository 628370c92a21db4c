package milter

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// panicFlag is a log handler that records whether a panic was logged: a
// panic recovered by go-milter or by the session is still a bug the fuzzer
// must report, although it no longer kills the process. It reads bccguard's
// own log messages and error texts, never the peer's data quoted inside
// go-milter's warnings ("milter protocol: ...").
type panicFlag struct{ seen atomic.Bool }

func (p *panicFlag) Enabled(context.Context, slog.Level) bool { return true }
func (p *panicFlag) WithAttrs([]slog.Attr) slog.Handler       { return p }
func (p *panicFlag) WithGroup(string) slog.Handler            { return p }
func (p *panicFlag) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "panic") {
		p.seen.Store(true)
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "error" && strings.HasPrefix(a.Value.String(), "panic in header handler") {
			p.seen.Store(true)
		}
		return true
	})
	return nil
}

// postfixStream is what Postfix sends for one message with the options
// bccguard negotiates, and the start of a second one.
func postfixStream() []byte {
	var b []byte
	b = append(b, optneg()...)
	b = append(b, rawPacket('D', "Mi", "ABC123")...)
	b = append(b, rawPacket('M', "<staff@city.example.jp>", "SIZE=100", "BODY=8BITMIME")...)
	b = append(b, rawPacket('L', "From", "staff@city.example.jp")...)
	b = append(b, rawPacket('L', "To", "a@ext.example, \"B\" <b@ext2.example>")...)
	b = append(b, rawPacket('L', "Cc", "c@city.example.jp")...)
	b = append(b, rawPacket('D', "Ei", "ABC123")...)
	b = append(b, rawPacket('E')...)
	b = append(b, rawPacket('A')...)
	b = append(b, rawPacket('M', "<>")...)
	b = append(b, rawPacket('Q')...)
	return b
}

// FuzzProtocol feeds arbitrary byte streams to the real server over a
// socket, as any local process can. The server must neither crash nor
// panic (recovered or not) nor hang once the client has finished.
func FuzzProtocol(f *testing.F) {
	stream := postfixStream()
	f.Add(stream)
	f.Add(optneg())
	f.Add([]byte{0, 0, 0, 0})
	f.Add(append(optneg(), 0, 0, 0, 0))
	f.Add(append(optneg(), binary.BigEndian.AppendUint32(nil, 2)...))
	f.Add(append(optneg(), append(binary.BigEndian.AppendUint32(nil, 4), "Mabc"...)...))
	f.Add(append(optneg(), append(binary.BigEndian.AppendUint32(nil, 4), "Rabc"...)...))
	f.Add(append(optneg(), append(binary.BigEndian.AppendUint32(nil, 4), "Cabc"...)...))
	f.Add(append(optneg(), append(binary.BigEndian.AppendUint32(nil, 5), "Ca\x004"...)...))
	f.Add(append(optneg(), binary.BigEndian.AppendUint32(nil, 512<<20)...))
	f.Add(append(optneg(), rawPacket('D')...))
	f.Add(append(optneg(), rawPacket('L', "To")...))
	f.Add(append(optneg(), rawPacket('O', "x")...))
	f.Add(append(optneg(), rawPacket('E')...))
	f.Add(stream[:len(stream)/2])

	var flag panicFlag
	addr, _, _ := startServerWith(f, cityPolicy(f, nil), func(s *Server) {
		s.log = slog.New(&flag)
		protocolLog.Store(s.log)
	})
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Read while writing: replies must not fill the socket buffers
		// while the input is still going out.
		drained := make(chan error, 1)
		go func() {
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, err := io.Copy(io.Discard, c)
			drained <- err
		}()
		c.Write(in)
		c.(*net.TCPConn).CloseWrite()
		if err := <-drained; err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("server still holds the session 30 s after the client finished")
			}
		}
		if flag.seen.Load() {
			t.Fatalf("the server panicked on this input (recovered)")
		}
	})
}
