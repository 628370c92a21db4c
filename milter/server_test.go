package milter

import (
	"context"
	"net"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/bccguard/bccguard/audit"
	"github.com/bccguard/bccguard/config"
	"github.com/bccguard/bccguard/internal/miltertest"
	"github.com/bccguard/bccguard/policy"
)

func cityPolicy(t testing.TB, mod func(*policy.Settings)) *policy.Config {
	t.Helper()
	s := policy.DefaultSettings()
	if mod != nil {
		mod(&s)
	}
	var internal policy.DomainSet
	for _, d := range []string{"city.example.jp", ".city.example.jp"} {
		p, err := policy.ParseDomainPattern(d)
		if err != nil {
			t.Fatal(err)
		}
		internal = append(internal, p)
	}
	return &policy.Config{Internal: internal, Default: s}
}

func snapshot(p *policy.Config) *config.Config {
	return &config.Config{Policy: p, Audit: audit.Options{Mode: audit.ModeDomain}}
}

// startServer runs a real server on 127.0.0.1:0 and returns its address
// and the pointer that holds its policy.
func startServer(t *testing.T, cfg *policy.Config) (string, *atomic.Pointer[config.Config], *Server) {
	t.Helper()
	return startServerWith(t, cfg, nil)
}

// startServerWith lets a test change the server before it serves.
func startServerWith(t testing.TB, cfg *policy.Config, change func(*Server)) (string, *atomic.Pointer[config.Config], *Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p, srv := serveOn(t, ln, cfg, change)
	return ln.Addr().String(), p, srv
}

// serveOn runs a real server on ln until the test ends.
func serveOn(t testing.TB, ln net.Listener, cfg *policy.Config, change func(*Server)) (*atomic.Pointer[config.Config], *Server) {
	t.Helper()
	var p atomic.Pointer[config.Config]
	p.Store(snapshot(cfg))
	srv := NewServer(&p, nil, nil)
	if change != nil {
		change(srv)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		// The test's own sessions are closed by now (their cleanups run
		// first); the deadline only detects one that does not end, so it
		// is generous for a loaded machine.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &p, srv
}

func TestNegotiatesHeadersOnly(t *testing.T) {
	addr, _, _ := startServer(t, cityPolicy(t, nil))
	s := miltertest.Dial(t, "tcp", addr)
	for _, opt := range []gomilter.OptProtocol{gomilter.OptNoBody, gomilter.OptNoRcptTo, gomilter.OptNoConnect,
		gomilter.OptNoHelo, gomilter.OptNoData, gomilter.OptNoUnknown, gomilter.OptNoEOH, gomilter.OptNoHeaderReply, gomilter.OptNoMailReply} {
		if !s.ProtocolOption(opt) {
			t.Errorf("protocol option %v not negotiated", opt)
		}
	}
	if s.ActionOption(gomilter.OptAddRcpt) || s.ActionOption(gomilter.OptRemoveRcpt) || s.ActionOption(gomilter.OptChangeFrom) {
		t.Error("server asked for envelope changes")
	}
}

func TestConvertsAndDecidesEachMessageOnItsOwn(t *testing.T) {
	addr, _, _ := startServer(t, cityPolicy(t, nil))
	s := miltertest.Dial(t, "tcp", addr)
	mods, act := s.Send(t, miltertest.Message{
		Sender: "staff@city.example.jp", QueueID: "4ABC1", Rcpts: []string{"a@ext.example", "b@ext.example"},
		Header: [][2]string{{"From", "staff@city.example.jp"}, {"To", "a@ext.example"}, {"Subject", "x"}, {"To", "b@ext.example"}, {"Cc", "c@ext.example"}},
	})
	if act.Type != gomilter.ActionAccept {
		t.Fatalf("action = %v", act)
	}
	got := make([]string, len(mods))
	for i, m := range mods {
		got[i] = m.String()
	}
	want := []string{
		`ChangeHeader 1 "To" "undisclosed-recipients:;"`,
		`ChangeHeader 2 "To" ""`,
		`AddHeader "X-BCCGuard" "converted; to=2 external=2 moved=2"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("modifications:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The second message of the same session has one external To only.
	mods, act = s.Send(t, miltertest.Message{Sender: "staff@city.example.jp", QueueID: "4ABC2",
		Header: [][2]string{{"To", "a@ext.example"}}})
	if act.Type != gomilter.ActionAccept || len(mods) != 0 {
		t.Fatalf("second message: %v %v", act, mods)
	}
	// And the third converts again: no state leaks from one to the next.
	mods, _ = s.Send(t, miltertest.Message{Sender: "staff@city.example.jp", QueueID: "4ABC3",
		Header: [][2]string{{"To", "a@city.example.jp,\n\tb@ext.example"}}})
	if v, ok := miltertest.ToValue(mods); !ok || v != "undisclosed-recipients:;" {
		t.Fatalf("third message: %v", mods)
	}
}

func TestTempfailOnUnreadableTo(t *testing.T) {
	addr, _, _ := startServer(t, cityPolicy(t, func(s *policy.Settings) { s.OnParseError = policy.ParseErrorTempfail }))
	s := miltertest.Dial(t, "tcp", addr)
	mods, act := s.Send(t, miltertest.Message{Sender: "staff@city.example.jp", Header: [][2]string{{"To", "<@>, <>"}}})
	if len(mods) != 0 || act.SMTPCode != 451 || !strings.Contains(act.SMTPReply, "bccguard") {
		t.Fatalf("got %v %v", mods, act)
	}
}

func TestSessionKeepsItsSnapshot(t *testing.T) {
	addr, p, _ := startServer(t, cityPolicy(t, nil))
	s := miltertest.Dial(t, "tcp", addr)
	msg := miltertest.Message{Sender: "staff@city.example.jp", Header: [][2]string{{"To", "a@ext.example, b@ext.example"}}}
	if mods, _ := s.Send(t, msg); len(mods) == 0 {
		t.Fatal("first message not converted")
	}
	// A reload to a threshold of 5 does not change the running session...
	p.Store(snapshot(cityPolicy(t, func(s *policy.Settings) { s.Threshold = 5 })))
	if mods, _ := s.Send(t, msg); len(mods) == 0 {
		t.Fatal("running session changed its rules mid-way")
	}
	// ...but a new one uses it.
	if mods, _ := miltertest.Dial(t, "tcp", addr).Send(t, msg); len(mods) != 0 {
		t.Fatalf("new session did not take the new config: %v", mods)
	}
}

// TestPanicTempfailsAndServerLivesOn: a panic while deciding refuses that
// message with a temporary failure, is counted, and the server goes on.
func TestPanicTempfailsAndServerLivesOn(t *testing.T) {
	// The first decision panics, the later ones do not.
	var calls atomic.Int64
	addr, _, srv := startServerWith(t, cityPolicy(t, nil), func(s *Server) {
		s.decide = func(c *policy.Config, m policy.Message) policy.Decision {
			if calls.Add(1) == 1 {
				panic("boom")
			}
			return policy.Decide(c, m)
		}
	})
	msg := miltertest.Message{Sender: "staff@city.example.jp", Header: [][2]string{{"To", "a@ext.example, b@ext.example"}}}
	mods, act := miltertest.Dial(t, "tcp", addr).Send(t, msg)
	if len(mods) != 0 || act.SMTPCode != 451 {
		t.Fatalf("after panic: %v %v", mods, act)
	}
	if v, _ := miltertest.ToValue(must(miltertest.Dial(t, "tcp", addr).Send(t, msg))); v != "undisclosed-recipients:;" {
		t.Fatal("server did not survive the panic")
	}
	if got := scrape(t, srv); !strings.Contains(got, "bccguard_panics_total 1") {
		t.Fatalf("panic not counted:\n%s", got)
	}
}

func must(mods []gomilter.ModifyAction, _ *gomilter.Action) []gomilter.ModifyAction { return mods }

// scrape reads the server's metrics in the Prometheus text format.
func scrape(t *testing.T, srv *Server) string {
	t.Helper()
	rec := httptest.NewRecorder()
	srv.metrics.Handler(func() error { return nil }).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}
