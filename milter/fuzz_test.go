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

	"github.com/bccguard/bccguard/internal/postfixtest"
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
		// The handlers that recover their own panics (session.go).
		if a.Key == "error" && (strings.HasPrefix(a.Value.String(), "panic in header handler") ||
			strings.HasPrefix(a.Value.String(), "panic in body handler")) {
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

// splitStream is what Postfix sends for one message to split on a
// connection negotiated for split (recipients and body, no replies to
// them), and the start of a second one.
func splitStream() []byte {
	var b []byte
	b = append(b, optneg()...)
	b = append(b, rawPacket('D', "Mi", "ABC123")...)
	b = append(b, rawPacket('M', "<staff@city.example.jp>", "SIZE=100", "BODY=8BITMIME")...)
	b = append(b, rawPacket('R', "<a@ext.example>", "NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;a@ext.example")...)
	b = append(b, rawPacket('R', "<b@ext2.example>")...)
	b = append(b, rawPacket('R', "<bcc@ext3.example>")...)
	b = append(b, rawPacket('L', "From", "staff@city.example.jp")...)
	b = append(b, rawPacket('L', "To", "a@ext.example, \"B\" <b@ext2.example>")...)
	b = append(b, rawPacket('L', "Message-ID", "<fuzz@city.example.jp>")...)
	b = append(b, rawPacket('N')...)
	for _, chunk := range []string{"first line\r\n", "second line\r\n"} {
		b = append(b, binary.BigEndian.AppendUint32(nil, uint32(len(chunk)+1))...)
		b = append(append(b, 'B'), chunk...)
	}
	b = append(b, rawPacket('D', "Ei", "ABC123")...)
	b = append(b, rawPacket('E')...)
	b = append(b, rawPacket('M', "<>")...)
	b = append(b, rawPacket('R', "<a@ext.example>")...)
	b = append(b, rawPacket('A')...)
	b = append(b, rawPacket('Q')...)
	return b
}

// FuzzProtocol feeds arbitrary byte streams to the real server over a
// socket, as any local process can. The server must neither crash nor
// panic (recovered or not) nor hang once the client has finished. With
// split true the input goes to a server whose rule splits (recipients,
// body chunks, the body spool, copies handed to a local SMTP sink), else
// to a hide-only one.
func FuzzProtocol(f *testing.F) {
	stream, split := postfixStream(), splitStream()
	for _, in := range [][]byte{
		stream,
		optneg(),
		{0, 0, 0, 0},
		append(optneg(), 0, 0, 0, 0),
		append(optneg(), binary.BigEndian.AppendUint32(nil, 2)...),
		append(optneg(), append(binary.BigEndian.AppendUint32(nil, 4), "Mabc"...)...),
		append(optneg(), append(binary.BigEndian.AppendUint32(nil, 4), "Rabc"...)...),
		append(optneg(), append(binary.BigEndian.AppendUint32(nil, 4), "Cabc"...)...),
		append(optneg(), append(binary.BigEndian.AppendUint32(nil, 5), "Ca\x004"...)...),
		append(optneg(), binary.BigEndian.AppendUint32(nil, 512<<20)...),
		append(optneg(), rawPacket('D')...),
		append(optneg(), rawPacket('L', "To")...),
		append(optneg(), rawPacket('O', "x")...),
		append(optneg(), rawPacket('E')...),
		stream[:len(stream)/2],
	} {
		f.Add(false, in)
		f.Add(true, in)
	}
	f.Add(true, split)
	f.Add(true, split[:len(split)/2])

	var flag panicFlag
	logTo := func(s *Server) {
		s.log = slog.New(&flag)
		protocolLog.Store(s.log)
	}
	hideAddr, _, _ := startServerWith(f, cityPolicy(f, nil), logTo)
	sink := postfixtest.StartSink(f)
	splitAddr, p, _ := startServerWith(f, cityPolicy(f, nil), logTo)
	p.Store(splitSnapshot(f, sink.Addr()))
	f.Fuzz(func(t *testing.T, split bool, in []byte) {
		addr := hideAddr
		if split {
			addr = splitAddr
		}
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

// TestSplitStreamSplits: the split seed of FuzzProtocol reaches the whole
// split path (copies handed over, recipients removed, the original kept
// for the Bcc recipient), so that the fuzzer mutates from there.
func TestSplitStreamSplits(t *testing.T) {
	sink := postfixtest.StartSink(t)
	addr, p, _ := startServer(t, cityPolicy(t, nil))
	p.Store(splitSnapshot(t, sink.Addr()))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(splitStream()); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	replies, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<a@ext.example>\x00", "<b@ext2.example>\x00", "undisclosed-recipients:;"} {
		if !strings.Contains(string(replies), want) {
			t.Errorf("replies lack %q: %q", want, replies)
		}
	}
	if got := copies(sink); len(got) != 2 || !strings.HasSuffix(got["b@ext2.example"], "\r\nfirst line\r\nsecond line\r\n") {
		t.Errorf("copies %q", got)
	}
}
