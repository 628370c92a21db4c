package milter

import (
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bccguard/bccguard/internal/miltertest"
	"github.com/bccguard/bccguard/internal/syncbuf"
	"github.com/bccguard/bccguard/policy"
)

// TestUnqualifiedOriginWarnedHourly: mail from a dotless sender domain or
// from the machine's own host name is logged at warn, once an hour per
// domain, without the address; a qualified domain never is.
func TestUnqualifiedOriginWarnedHourly(t *testing.T) {
	log := &syncbuf.Buffer{}
	clock := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	addr, _, _ := startServerWith(t, cityPolicy(t, nil), func(s *Server) {
		s.log = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelWarn}))
		s.origins.now = func() time.Time { return clock }
	})
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	send := func(sender string) {
		s := miltertest.Dial(t, "tcp", addr)
		s.Send(t, miltertest.Message{Sender: sender, QueueID: "Q1",
			Header: [][2]string{{"To", "a@ext.example, b@other.example"}}})
		s.Close()
	}
	warnings := func(domain string) int {
		return strings.Count(log.String(), "sender_domain="+domain+" ")
	}

	send("root@vm")
	send("www-data@vm")
	send("staff@city.example.jp")
	if n := warnings("vm"); n != 1 {
		t.Fatalf("%d warnings for vm in an hour, want 1:\n%s", n, log)
	}
	if !strings.Contains(log.String(), "set myorigin in main.cf") || !strings.Contains(log.String(), "passed=sender_not_covered") {
		t.Errorf("warning lacks the hint or the verdict:\n%s", log)
	}
	if strings.Contains(log.String(), "@") {
		t.Errorf("address in the log:\n%s", log)
	}
	if n := warnings("city.example.jp"); n != 0 {
		t.Errorf("qualified domain warned about:\n%s", log)
	}

	send("root@localhost")
	send("root@" + host)
	if warnings("localhost") != 1 || warnings(strings.ToLower(host)) != 1 {
		t.Errorf("localhost and the host name %s not warned about once each:\n%s", host, log)
	}

	clock = clock.Add(time.Hour)
	send("root@vm")
	if n := warnings("vm"); n != 2 {
		t.Fatalf("%d warnings for vm after an hour, want 2", n)
	}
}

// TestUnqualifiedOriginCoveredNotWarned: a rule that covers the dotless
// domain is the admin's choice; mail from it is checked, nothing to warn.
func TestUnqualifiedOriginCoveredNotWarned(t *testing.T) {
	log := &syncbuf.Buffer{}
	cfg := cityPolicy(t, nil)
	vm, err := policy.ParseDomainPattern("vm")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Internal = append(cfg.Internal, vm)
	addr, _, _ := startServerWith(t, cfg, func(s *Server) {
		s.log = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	s := miltertest.Dial(t, "tcp", addr)
	s.Send(t, miltertest.Message{Sender: "root@vm", QueueID: "Q1",
		Header: [][2]string{{"To", "a@ext.example, b@other.example"}}})
	s.Send(t, miltertest.Message{Sender: "root@vm", QueueID: "Q2",
		Header: [][2]string{{"To", "a@ext.example"}}})
	s.Close()
	if strings.Contains(log.String(), "unqualified") {
		t.Errorf("covered domain vm warned about:\n%s", log)
	}
}

func TestOriginWarnerMemoryBounded(t *testing.T) {
	w := newOriginWarner()
	clock := time.Now()
	w.now = func() time.Time { return clock }
	for i := range maxOriginDomains + 10 {
		w.due("d" + string(rune('a'+i%26)) + strings.Repeat("x", i/26))
	}
	if len(w.last) > maxOriginDomains {
		t.Fatalf("%d domains remembered", len(w.last))
	}
	clock = clock.Add(time.Hour)
	if !w.due("new") {
		t.Fatal("no room after an hour")
	}
}

// TestAuditRecordHasMessageID: the audit record carries the Message-ID,
// which follows a local submission across the queue ids pickup gives it.
func TestAuditRecordHasMessageID(t *testing.T) {
	log := &syncbuf.Buffer{}
	addr, _, _ := startServerWith(t, cityPolicy(t, nil), func(s *Server) {
		s.log = slog.New(slog.NewTextHandler(log, nil))
	})
	s := miltertest.Dial(t, "tcp", addr)
	s.Send(t, miltertest.Message{Sender: "staff@city.example.jp", QueueID: "Q2", Header: [][2]string{
		{"Message-ID", " <20260101.abc@city.example.jp>"}, {"To", "a@ext.example, b@other.example"}}})
	s.Send(t, miltertest.Message{Sender: "staff@city.example.jp", QueueID: "Q3", Header: [][2]string{
		{"To", "a@ext.example, b@other.example"}}})
	if !strings.Contains(log.String(), "queue_id=Q2 message_id=20260101.abc action=convert") {
		t.Errorf("no Message-ID in the record:\n%s", log)
	}
	// The next message on the same session has none: nothing carried over.
	if !strings.Contains(log.String(), "queue_id=Q3 action=convert") {
		t.Errorf("Message-ID carried over to the next message:\n%s", log)
	}
}
