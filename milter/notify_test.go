package milter

import (
	"bytes"
	"context"
	"net/mail"
	"testing"
	"time"

	"github.com/bccguard/bccguard/config"
	"github.com/bccguard/bccguard/internal/miltertest"
	"github.com/bccguard/bccguard/internal/postfixtest"
	"github.com/bccguard/bccguard/notice"
	"github.com/bccguard/bccguard/policy"
)

// noticeSnapshot is the config with notices from postmaster, handed to
// the sink as the reinjection service.
func noticeSnapshot(cfg *policy.Config, sink *postfixtest.Sink, tmpl *notice.Template, minInterval time.Duration) *config.Config {
	c := snapshot(cfg)
	c.Notice = &notice.Settings{From: mail.Address{Address: "postmaster@city.example.jp"}, Template: tmpl, MinInterval: minInterval, Used: true}
	c.Reinject = config.Reinject{Address: "inet:" + sink.Addr(), Timeout: 5 * time.Second}
	return c
}

// drain stops the notifier, waiting for every notice, and returns what
// the sink received.
func drain(t *testing.T, n *notice.Notifier, sink *postfixtest.Sink) []postfixtest.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	return sink.Deliveries()
}

// TestNoticePerMessage: in one milter session, each converted message
// queues its own notice naming its own fields (nothing carried over from
// the message before), handed over by SMTP with the null sender; a pass
// queues none, and the reply to Postfix is the same as without notices.
func TestNoticePerMessage(t *testing.T) {
	sink := postfixtest.StartSink(t)
	n := notice.New(notice.Options{})
	cfg := cityPolicy(t, func(s *policy.Settings) { s.NotifySender = true })
	addr, p, _ := startServerWith(t, cfg, func(s *Server) { s.SetNotifier(n) })
	p.Store(noticeSnapshot(cfg, sink, notice.Builtin(), 0))

	s := miltertest.Dial(t, "tcp", addr)
	two := [2]string{"To", "a@ext.example, b@other.example"}
	mods, _ := s.Send(t, miltertest.Message{Sender: "staff1@city.example.jp", QueueID: "Q1",
		Header: [][2]string{two, {"Subject", "first"}, {"Message-ID", "<m1@mua.example>"}}})
	if to, _ := miltertest.ToValue(mods); to != "undisclosed-recipients:;" {
		t.Fatalf("first message not converted: %v", mods)
	}
	s.Send(t, miltertest.Message{Sender: "staff2@city.example.jp", QueueID: "Q2", Header: [][2]string{two, {"Subject", "second"}}})
	s.Send(t, miltertest.Message{Sender: "staff3@city.example.jp", QueueID: "Q3", Header: [][2]string{{"To", "a@ext.example"}, {"Subject", "third"}}})

	got := drain(t, n, sink)
	if len(got) != 2 {
		t.Fatalf("%d notices, want 2", len(got))
	}
	// Two workers: the notices may arrive in either order.
	byTo := map[string]postfixtest.Delivery{}
	for _, d := range got {
		m, err := mail.ReadMessage(bytes.NewReader(d.Data))
		if err != nil {
			t.Fatal(err)
		}
		byTo[m.Header.Get("To")] = d
	}
	for _, want := range []struct{ to, inReplyTo, queueID string }{
		{"<staff1@city.example.jp>", "<m1@mua.example>", "Q1"},
		{"<staff2@city.example.jp>", "", "Q2"},
	} {
		d, ok := byTo[want.to]
		if !ok {
			t.Errorf("no notice to %s", want.to)
			continue
		}
		m, _ := mail.ReadMessage(bytes.NewReader(d.Data))
		if d.From != "" || m.Header.Get("In-Reply-To") != want.inReplyTo || !bytes.Contains(d.Data, []byte("受付番号: "+want.queueID+"\r\n")) {
			t.Errorf("notice to %s: from <%s>\n%s", want.to, d.From, d.Data)
		}
	}
}

// TestNoticeFollowsReload: a new session takes the notice settings of the
// new snapshot (here a custom template), while who was told when survives
// the reload (min_interval still holds for the first sender).
func TestNoticeFollowsReload(t *testing.T) {
	sink := postfixtest.StartSink(t)
	n := notice.New(notice.Options{})
	cfg := cityPolicy(t, func(s *policy.Settings) { s.NotifySender = true })
	addr, p, _ := startServerWith(t, cfg, func(s *Server) { s.SetNotifier(n) })
	p.Store(noticeSnapshot(cfg, sink, notice.Builtin(), time.Hour))
	two := [][2]string{{"To", "a@ext.example, b@other.example"}}
	miltertest.Dial(t, "tcp", addr).Send(t, miltertest.Message{Sender: "staff1@city.example.jp", QueueID: "Q1", Header: two})

	custom, err := notice.ParseTemplate(`{{define "subject"}}custom subject{{end}}custom body for {{.QueueID}}`)
	if err != nil {
		t.Fatal(err)
	}
	p.Store(noticeSnapshot(cfg, sink, custom, time.Hour))
	s := miltertest.Dial(t, "tcp", addr)
	s.Send(t, miltertest.Message{Sender: "STAFF1@city.example.jp", QueueID: "Q2", Header: two})
	s.Send(t, miltertest.Message{Sender: "staff2@city.example.jp", QueueID: "Q3", Header: two})

	got := drain(t, n, sink)
	if len(got) != 2 {
		t.Fatalf("%d notices, want 2 (staff1 once, staff2 once)", len(got))
	}
	for _, d := range got {
		custom := bytes.Contains(d.Data, []byte("Subject: custom subject\r\n"))
		switch {
		case d.Rcpts[0] == "staff1@city.example.jp" && !custom && bytes.Contains(d.Data, []byte("受付番号: Q1")):
		case d.Rcpts[0] == "staff2@city.example.jp" && custom && bytes.HasSuffix(d.Data, []byte("custom body for Q3\r\n")):
		default:
			t.Errorf("unexpected notice to %v:\n%s", d.Rcpts, d.Data)
		}
	}
}
