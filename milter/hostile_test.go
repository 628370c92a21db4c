package milter

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bccguard/bccguard/config"
	"github.com/bccguard/bccguard/internal/miltertest"
	"github.com/bccguard/bccguard/internal/syncbuf"
	"github.com/bccguard/bccguard/metrics"
)

// Tests of what a hostile local process can send to the milter port
// (issue: "bccguard survives any milter client"). Each of the crashes
// below took the whole process down with go-milter v0.10.1 as published:
// a failure here kills the test binary, not just the test.

// optneg is the negotiation packet Postfix 3.7 sends.
var optneg = miltertest.RawNegotiation

// rawDial connects without a milter client; negotiate says whether to
// send the negotiation packet and wait for the reply first.
func rawDial(t *testing.T, addr string, negotiate bool) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if negotiate {
		if _, err := c.Write(optneg()); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var hdr [5]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil || hdr[4] != 'O' {
			t.Fatalf("negotiation reply: %v %q", err, hdr)
		}
		if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(hdr[:4]))-1); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Time{})
	}
	return c
}

// expectClosed waits for the server to close c (EOF or reset). The
// deadline detects a hang, it does not measure speed.
func expectClosed(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", within)
	}
}

// cityMessage is converted by cityPolicy.
var cityMessage = miltertest.Message{Sender: "staff@city.example.jp", Header: [][2]string{{"To", "a@ext.example, b@ext2.example"}}}

// expectServes runs a normal transaction on s (a session that may have
// been opened before the attack) and checks that it was converted.
func expectServes(t *testing.T, s *miltertest.Session) {
	t.Helper()
	if v, _ := miltertest.ToValue(must(s.Send(t, cityMessage))); v != "undisclosed-recipients:;" {
		t.Fatalf("transaction after the attack not converted: %q", v)
	}
}

func TestEmptyPacketClosesOnlyItsSession(t *testing.T) {
	for _, negotiated := range []bool{false, true} {
		name := "before negotiation"
		if negotiated {
			name = "after negotiation"
		}
		t.Run(name, func(t *testing.T) {
			addr, _, _ := startServer(t, cityPolicy(t, nil))
			bystander := miltertest.Dial(t, "tcp", addr)
			expectServes(t, bystander)
			c := rawDial(t, addr, negotiated)
			c.Write([]byte{0, 0, 0, 0})
			expectClosed(t, c, 10*time.Second)
			expectServes(t, bystander)
			expectServes(t, miltertest.Dial(t, "tcp", addr))
		})
	}
}

func TestUnterminatedArgumentClosesOnlyItsSession(t *testing.T) {
	for _, p := range []struct{ name, packet string }{
		{"MAIL", "M<a@ext.example>"},
		{"RCPT", "R<b@ext.example>"},
		{"CONNECT", "Cclient.example"},
		{"CONNECT without family", "Cclient.example\x00"},
	} {
		t.Run(p.name, func(t *testing.T) {
			var logs syncbuf.Buffer
			addr, _, _ := startServerWith(t, cityPolicy(t, nil), func(s *Server) {
				protocolLog.Store(slog.New(slog.NewTextHandler(&logs, nil)))
			})
			bystander := miltertest.Dial(t, "tcp", addr)
			c := rawDial(t, addr, true)
			c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(p.packet))), p.packet...))
			expectClosed(t, c, 10*time.Second)
			expectServes(t, bystander)
			expectServes(t, miltertest.Dial(t, "tcp", addr))
			// The warning names the peer: the client's own address.
			if got := logs.String(); !strings.Contains(got, "level=WARN") || !strings.Contains(got, c.LocalAddr().String()) {
				t.Errorf("no warning naming the peer %s:\n%s", c.LocalAddr(), got)
			}
		})
	}
}

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func TestClaimedLengthCostsNoMemory(t *testing.T) {
	addr, _, _ := startServer(t, cityPolicy(t, nil))

	// Over the packet limit: refused before anything is read.
	over := rawDial(t, addr, true)
	over.Write(binary.BigEndian.AppendUint32(nil, 512<<20))
	expectClosed(t, over, 10*time.Second)

	// Within the limit but never sent: memory follows what arrives. With
	// go-milter as published, each of these allocated the whole claimed
	// MiB before reading (64 MiB in all); read as it arrives, each costs
	// one 64 KiB chunk.
	const conns = 64
	before := heapInUse()
	for range conns {
		c := rawDial(t, addr, true)
		c.Write(append(binary.BigEndian.AppendUint32(nil, MaxPacketSize), "Lsubject\x00"...))
	}
	var grown uint64
	for range 20 { // the server reads the packets concurrently; watch for a while
		time.Sleep(50 * time.Millisecond)
		if h := heapInUse(); h > before && h-before > grown {
			grown = h - before
		}
	}
	if limit := uint64(conns) * 256 << 10; grown > limit {
		t.Fatalf("%d connections claiming %d bytes each grew the heap by %d bytes (limit %d)", conns, MaxPacketSize, grown, limit)
	}
	t.Logf("heap grew by %d KiB for %d connections", grown>>10, conns)
	expectServes(t, miltertest.Dial(t, "tcp", addr))
}

// startLimited runs a server with shortened limits and metrics kept.
func startLimited(t *testing.T, lim limits, logs io.Writer) (string, *Server) {
	t.Helper()
	var p atomic.Pointer[config.Config]
	p.Store(snapshot(cityPolicy(t, nil)))
	srv := newServer(&p, slog.New(slog.NewTextHandler(logs, nil)), metrics.New("test"), lim)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), srv
}

func TestIdleSessionTimesOutOnlyOutsideAMessage(t *testing.T) {
	addr, srv := startLimited(t, limits{maxSessions: 10, idle: 2 * time.Second, inMessage: time.Minute, pressureIdle: time.Hour}, io.Discard)

	// Negotiated, then silent: closed after the idle time.
	expectClosed(t, rawDial(t, addr, true), 10*time.Second)

	// Inside a message (after MAIL FROM) the session waits much longer:
	// Postfix sends the header only once DATA is complete.
	s := miltertest.Dial(t, "tcp", addr)
	if err := s.Begin(cityMessage); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	if _, _, err := s.Finish(); err != nil {
		t.Fatalf("session inside a message was cut: %v", err)
	}
	// After end-of-message the idle time applies again: the server closes
	// the session, well before the minute allowed inside a message. (A
	// fixed sleep here failed when the server was slower than the sleep.)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(scrape(t, srv), "\nbccguard_sessions_in_flight 0\n") {
		if time.Now().After(deadline) {
			t.Fatalf("session idle after end-of-message still open after %v:\n%s", 30*time.Second, scrape(t, srv))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := s.Begin(cityMessage); err == nil {
		if _, _, err = s.Finish(); err == nil {
			t.Fatal("session idle after end-of-message still open")
		}
	}
}

func TestSessionCapRefusesCountsAndShowsInReadyz(t *testing.T) {
	var logs syncbuf.Buffer
	addr, srv := startLimited(t, limits{maxSessions: 2, idle: time.Hour, inMessage: time.Hour, pressureIdle: time.Hour}, &logs)
	readyz := func() (int, string) {
		rec := httptest.NewRecorder()
		srv.metrics.Handler(srv.Saturated).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, _ := readyz(); code != 200 {
		t.Fatalf("readyz before the cap: %d", code)
	}
	first := rawDial(t, addr, true)
	rawDial(t, addr, true)
	// Over the cap: closed at once, not left in the backlog.
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		expectClosed(t, c, 10*time.Second)
		c.Close()
	}
	if code, body := readyz(); code != 503 || !strings.Contains(body, "session cap reached") {
		t.Fatalf("readyz at the cap: %d %q", code, body)
	}
	if got := scrape(t, srv); !strings.Contains(got, "bccguard_sessions_refused_total 3") {
		t.Fatalf("refusals not counted:\n%s", got)
	}
	if n := strings.Count(logs.String(), "session cap reached"); n != 1 {
		t.Fatalf("%d cap warnings, want 1 per minute:\n%s", n, logs.String())
	}
	// A slot freed is a slot usable again.
	first.Close()
	deadline := time.Now().Add(10 * time.Second)
	for srv.Saturated() != nil {
		if time.Now().After(deadline) {
			t.Fatal("slot not released after the client closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, _ := readyz(); code != 200 {
		t.Fatalf("readyz below the cap: %d", code)
	}
	expectServes(t, miltertest.Dial(t, "tcp", addr))
}

// TestSilentSessionsGiveWayUnderPressure: with the cap nearly reached, a
// new connection closes the sessions that have been silent too long (a
// crowd held on purpose, even after MAIL FROM), and never one that talks.
func TestSilentSessionsGiveWayUnderPressure(t *testing.T) {
	var logs syncbuf.Buffer
	// The margins are wide for a loaded machine: the talker is never
	// silent for 2 s unless the process stalls that long, and the silent
	// ones have been silent for 3 s more than that when the crowd comes.
	addr, srv := startLimited(t, limits{maxSessions: 3, idle: time.Hour, inMessage: time.Hour, pressureIdle: 2 * time.Second}, &logs)
	talker := miltertest.Dial(t, "tcp", addr)
	silent := rawDial(t, addr, true)
	silentInMessage := rawDial(t, addr, true)
	silentInMessage.Write(rawPacket('M', "<x>"))
	// The talker sends a message every 100 ms for 2.5 times the limit.
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
		expectServes(t, talker)
		time.Sleep(100 * time.Millisecond)
	}
	expectServes(t, miltertest.Dial(t, "tcp", addr))
	expectClosed(t, silent, 10*time.Second)
	expectClosed(t, silentInMessage, 10*time.Second)
	expectServes(t, talker)
	if got := scrape(t, srv); !strings.Contains(got, "bccguard_sessions_evicted_total 2") || !strings.Contains(got, "bccguard_sessions_refused_total 0") {
		t.Fatalf("evictions not counted as such:\n%s", got)
	}
	if !strings.Contains(logs.String(), "evicted=2") {
		t.Fatalf("no warning:\n%s", logs.String())
	}
}
