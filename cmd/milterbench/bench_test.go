package main

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	milter "github.com/d--j/go-milter"
)

// hideTo changes To at end-of-message, like the filters under test.
type hideTo struct{ milter.NoOpMilter }

func (hideTo) EndOfMessage(m milter.Modifier) (*milter.Response, error) {
	if err := m.ChangeHeader(1, "To", "undisclosed-recipients:;"); err != nil {
		return nil, err
	}
	return milter.RespAccept, nil
}

// reject refuses every message at end-of-message.
type reject struct{ milter.NoOpMilter }

func (reject) EndOfMessage(milter.Modifier) (*milter.Response, error) {
	return milter.RespTempFail, nil
}

// serve starts a go-milter server and returns its address.
func serve(t *testing.T, m milter.Milter, protocol milter.OptProtocol) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := milter.NewServer(
		milter.WithMilter(func() milter.Milter { return m }),
		milter.WithActions(milter.OptChangeHeader|milter.OptAddHeader),
		milter.WithProtocols(protocol),
	)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; err != nil && !errors.Is(err, milter.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func testConfig(addr string) Config {
	return Config{Network: "tcp", Address: addr, Sessions: 3, Messages: 7, To: 40, Body: 9000,
		Internal: "city.example.jp", Timeout: 5 * time.Second}
}

func TestRunCountsChanges(t *testing.T) {
	// Every event and every reply, so that the whole conversation is exercised.
	addr := serve(t, hideTo{}, 0)
	res, err := Run(context.Background(), testConfig(addr))
	if err != nil {
		t.Fatal(err)
	}
	if res.Messages != 21 || res.Changed != 21 || res.Errors != 0 || res.Rejected != 0 {
		t.Errorf("got %+v, want 21 messages, all changed, no errors", res)
	}
	if res.MsgsPerSec <= 0 || res.P50Ms <= 0 || res.P99Ms < res.P50Ms || res.MaxMs < res.P99Ms {
		t.Errorf("implausible numbers: %+v", res)
	}
}

func TestRunNoChange(t *testing.T) {
	addr := serve(t, milter.NoOpMilter{}, milter.OptNoBody|milter.OptNoHeaderReply|milter.OptNoRcptTo)
	res, err := Run(context.Background(), testConfig(addr))
	if err != nil {
		t.Fatal(err)
	}
	if res.Messages != 21 || res.Changed != 0 || res.Errors != 0 {
		t.Errorf("got %+v, want 21 messages, none changed", res)
	}
	if !strings.Contains(res.Negotiated, "NOBODY") || !strings.Contains(res.Negotiated, "NR_HDR") {
		t.Errorf("negotiated %q, want NOBODY and NR_HDR", res.Negotiated)
	}
}

func TestRunRejected(t *testing.T) {
	addr := serve(t, reject{}, 0)
	res, err := Run(context.Background(), testConfig(addr))
	if err != nil {
		t.Fatal(err)
	}
	if res.Messages != 21 || res.Rejected != 21 || res.Changed != 0 {
		t.Errorf("got %+v, want 21 rejected messages", res)
	}
}

func TestRunDuration(t *testing.T) {
	addr := serve(t, hideTo{}, milter.OptNoBody|milter.OptNoHeaderReply)
	cfg := testConfig(addr)
	// Long enough that each of the 3 sessions starts a transaction before
	// the end on a loaded machine (at 200 ms, a start delayed that long
	// could leave a session without any); a transaction takes a few ms.
	cfg.Duration = 2 * time.Second
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Messages < 3 || res.Changed != res.Messages || res.ElapsedSec < 2 {
		t.Errorf("got %+v", res)
	}
}

func TestRunNoFilter(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if _, err := Run(context.Background(), testConfig(addr)); err == nil {
		t.Error("Run against a closed port succeeded")
	}
}

func TestIdle(t *testing.T) {
	addr := serve(t, hideTo{}, milter.OptNoBody|milter.OptNoHeaderReply)
	cfg := testConfig(addr)
	cfg.Sessions = 20
	cfg.Duration = 50 * time.Millisecond
	var ready int
	res, err := Idle(context.Background(), cfg, func(n int, _ string) { ready = n })
	if err != nil {
		t.Fatal(err)
	}
	if ready != 20 || res.Errors != 0 {
		t.Errorf("ready %d, result %+v", ready, res)
	}
}

func TestFoldAddressList(t *testing.T) {
	cfg := Config{To: 500, Internal: "city.example.jp"}
	tpl := newMessageTemplate(cfg)
	to := tpl.fields[4].value
	lines := strings.Split(to, "\n")
	if len(lines) < 100 {
		t.Fatalf("To folded into %d lines, want many", len(lines))
	}
	for i, l := range lines {
		n := len(l)
		if i == 0 {
			n += len("To: ")
		} else if !strings.HasPrefix(l, " ") {
			t.Errorf("line %d %q does not start with a space", i, l)
		}
		if n > maxLine {
			t.Errorf("line %d is %d long", i, n)
		}
	}
	if got := strings.Count(to, "@"); got != 500 {
		t.Errorf("%d addresses, want 500", got)
	}
	if !strings.HasPrefix(to, "user0@city.example.jp, user1@ext1.example,") {
		t.Errorf("To starts %q", to[:50])
	}
	if len(tpl.rcpts) != 500 {
		t.Errorf("%d recipients, want 500", len(tpl.rcpts))
	}
}

func TestMakeBody(t *testing.T) {
	for _, n := range []int{0, 1, 2, 75, 76, 8192} {
		b := makeBody(n)
		if len(b) != n {
			t.Errorf("makeBody(%d) has %d bytes", n, len(b))
		}
		if n >= 2 && string(b[n-2:]) != "\r\n" {
			t.Errorf("makeBody(%d) does not end with CRLF", n)
		}
	}
}

func TestParseAddr(t *testing.T) {
	for _, tc := range []struct{ in, network, address string }{
		{"inet:127.0.0.1:10030", "tcp", "127.0.0.1:10030"},
		{"unix:/run/x.sock", "unix", "/run/x.sock"},
	} {
		n, a, err := ParseAddr(tc.in)
		if err != nil || n != tc.network || a != tc.address {
			t.Errorf("ParseAddr(%q) = %q, %q, %v", tc.in, n, a, err)
		}
	}
	for _, bad := range []string{"127.0.0.1:1", "inet:", "inet:nohost", "tcp:1.2.3.4:5"} {
		if _, _, err := ParseAddr(bad); err == nil {
			t.Errorf("ParseAddr(%q) succeeded", bad)
		}
	}
}
