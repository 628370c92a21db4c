package milter

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/bccguard/bccguard/audit"
	"github.com/bccguard/bccguard/config"
	"github.com/bccguard/bccguard/policy"
)

func cityPolicy(t *testing.T, mod func(*policy.Settings)) *policy.Config {
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
	var p atomic.Pointer[config.Config]
	p.Store(snapshot(cfg))
	srv := NewServer(&p, nil, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String(), &p, srv
}

// client plays Postfix: it offers everything Postfix 3.7 offers and lets
// the server negotiate down.
func newClientSession(t *testing.T, addr string) *gomilter.ClientSession {
	t.Helper()
	c := gomilter.NewClient("tcp", addr,
		gomilter.WithActions(gomilter.AllClientSupportedActionMasks))
	macros := gomilter.NewMacroBag()
	s, err := c.Session(macros)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

type message struct {
	// first is set for the first message of a session, which opens
	// with the connect and HELO stages.
	first           bool
	sender, queueID string
	rcpts           []string
	header          [][2]string
}

func send(t *testing.T, s *gomilter.ClientSession, macros *gomilter.MacroBag, m message) ([]gomilter.ModifyAction, *gomilter.Action) {
	t.Helper()
	step := func(act *gomilter.Action, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if act.StopProcessing() {
			t.Fatalf("stopped early: %v", act)
		}
	}
	if m.first {
		step(s.Conn("client.example", gomilter.FamilyInet, 25, "192.0.2.1"))
		step(s.Helo("client.example"))
	}
	step(s.Mail("<"+m.sender+">", ""))
	if len(m.rcpts) == 0 {
		m.rcpts = []string{"someone@ext.example"}
	}
	for _, r := range m.rcpts {
		step(s.Rcpt("<"+r+">", ""))
	}
	step(s.DataStart())
	for _, h := range m.header {
		step(s.HeaderField(h[0], h[1], nil))
	}
	step(s.HeaderEnd())
	macros.Set(gomilter.MacroQueueId, m.queueID)
	// BodyReadFrom sends the body (unless negotiated away) and then
	// end-of-message.
	mods, act, err := s.BodyReadFrom(strings.NewReader("body\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return mods, act
}

func TestNegotiatesHeadersOnly(t *testing.T) {
	addr, _, _ := startServer(t, cityPolicy(t, nil))
	s := newClientSession(t, addr)
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
	c := gomilter.NewClient("tcp", addr, gomilter.WithActions(gomilter.AllClientSupportedActionMasks))
	macros := gomilter.NewMacroBag()
	s, err := c.Session(macros)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	mods, act := send(t, s, macros, message{first: true,
		sender: "staff@city.example.jp", queueID: "4ABC1", rcpts: []string{"a@ext.example", "b@ext.example"},
		header: [][2]string{{"From", "staff@city.example.jp"}, {"To", "a@ext.example"}, {"Subject", "x"}, {"To", "b@ext.example"}, {"Cc", "c@ext.example"}},
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
	mods, act = send(t, s, macros, message{
		sender: "staff@city.example.jp", queueID: "4ABC2", rcpts: []string{"a@ext.example"},
		header: [][2]string{{"To", "a@ext.example"}},
	})
	if act.Type != gomilter.ActionAccept || len(mods) != 0 {
		t.Fatalf("second message: %v %v", act, mods)
	}
	// And the third converts again: no state leaks from one to the next.
	mods, _ = send(t, s, macros, message{
		sender: "staff@city.example.jp", queueID: "4ABC3",
		header: [][2]string{{"To", "a@city.example.jp,\n\tb@ext.example"}},
	})
	if len(mods) != 2 || mods[0].HeaderValue != "undisclosed-recipients:;" {
		t.Fatalf("third message: %v", mods)
	}
}

func TestTempfailOnUnreadableTo(t *testing.T) {
	addr, _, _ := startServer(t, cityPolicy(t, func(s *policy.Settings) { s.OnParseError = policy.ParseErrorTempfail }))
	c := gomilter.NewClient("tcp", addr, gomilter.WithActions(gomilter.AllClientSupportedActionMasks))
	macros := gomilter.NewMacroBag()
	s, err := c.Session(macros)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mods, act := send(t, s, macros, message{first: true, sender: "staff@city.example.jp", header: [][2]string{{"To", "no address here"}}})
	if len(mods) != 0 || act.SMTPCode != 451 || !strings.Contains(act.SMTPReply, "bccguard") {
		t.Fatalf("got %v %v", mods, act)
	}
}

func TestSessionKeepsItsSnapshot(t *testing.T) {
	addr, p, _ := startServer(t, cityPolicy(t, nil))
	c := gomilter.NewClient("tcp", addr, gomilter.WithActions(gomilter.AllClientSupportedActionMasks))
	macros := gomilter.NewMacroBag()
	s, err := c.Session(macros)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	msg := message{first: true, sender: "staff@city.example.jp", header: [][2]string{{"To", "a@ext.example, b@ext.example"}}}
	if mods, _ := send(t, s, macros, msg); len(mods) == 0 {
		t.Fatal("first message not converted")
	}
	msg.first = false
	if mods, _ := send(t, s, macros, msg); len(mods) == 0 {
		t.Fatal("first message not converted")
	}
	// A reload to a threshold of 5 does not change the running session...
	p.Store(snapshot(cityPolicy(t, func(s *policy.Settings) { s.Threshold = 5 })))
	if mods, _ := send(t, s, macros, msg); len(mods) == 0 {
		t.Fatal("running session changed its rules mid-way")
	}
	// ...but a new one uses it.
	s2, err := c.Session(gomilter.NewMacroBag())
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	msg.first = true
	if mods, _ := send(t, s2, gomilter.NewMacroBag(), msg); len(mods) != 0 {
		t.Fatalf("new session did not take the new config: %v", mods)
	}
}
