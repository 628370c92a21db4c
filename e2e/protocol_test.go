package e2e

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/bccguard/bccguard/internal/freeaddr"
	"github.com/bccguard/bccguard/internal/miltertest"
)

// Tests of local processes that connect to bccguard's milter port
// directly, as any user on the host can (issue: "bccguard survives any
// milter client"). None may stop Postfix's mail.

// milterAttacker connects to addr, negotiates when asked, and sends raw.
func milterAttacker(t *testing.T, addr string, negotiate bool, raw []byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if negotiate {
		c.Write(miltertest.RawNegotiation())
		var hdr [4]byte
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			t.Fatalf("negotiation reply: %v", err)
		}
		io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(hdr[:])))
		c.SetReadDeadline(time.Time{})
	}
	c.Write(raw)
	return c
}

// sendConverted sends one message through Postfix and checks that it is
// delivered with its To list hidden.
func sendConverted(t *testing.T, pf interface {
	Send(string, []string, []byte) error
}, subject string) error {
	msg := "From: staff@city.example.jp\r\nTo: a@ext.example, b@other.example\r\nSubject: " + subject + "\r\n\r\nbody\r\n"
	return pf.Send("staff@city.example.jp", []string{"a@ext.example", "b@other.example"}, []byte(msg))
}

func TestHostileMilterClientsDoNotStopMail(t *testing.T) {
	sink, d, pf := setup(t, cityConfig)
	packet := func(s string) []byte { return append(binary.BigEndian.AppendUint32(nil, uint32(len(s))), s...) }
	attacks := []struct {
		name      string
		negotiate bool
		raw       []byte
	}{
		{"empty packet before negotiation", false, []byte{0, 0, 0, 0}},
		{"empty packet after negotiation", true, []byte{0, 0, 0, 0}},
		{"MAIL without NUL", true, packet("M<x>")},
		{"RCPT without NUL", true, packet("R<x>")},
		{"CONNECT without NUL", true, packet("Cclient")},
		{"512 MiB claimed", true, binary.BigEndian.AppendUint32(nil, 512<<20)},
	}
	for _, a := range attacks {
		c := milterAttacker(t, d.addr, a.negotiate, a.raw)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Errorf("%s: connection not closed by bccguard: %v", a.name, err)
		}
		if err := sendConverted(t, pf, a.name); err != nil {
			t.Errorf("%s: mail after the attack: %v", a.name, err)
		}
	}
	// Claimed lengths within the packet limit, never sent: memory follows
	// what arrived (with go-milter as published, each cost 1 MiB at once
	// and the 512 MiB claim above 512 MiB).
	before := rssKiB(t, d.cmd.Process.Pid)
	for range 200 {
		milterAttacker(t, d.addr, true, append(binary.BigEndian.AppendUint32(nil, 1<<20), 'L'))
	}
	time.Sleep(time.Second)
	grown := rssKiB(t, d.cmd.Process.Pid) - before
	t.Logf("RSS grew by %d KiB with 200 connections claiming 1 MiB each (race-instrumented build)", grown)
	if grown > 100<<10 {
		t.Errorf("RSS grew by %d KiB: claimed lengths cost memory", grown)
	}
	if err := sendConverted(t, pf, "after claims"); err != nil {
		t.Errorf("mail after the claims: %v", err)
	}
	ds := sink.WaitFor(t, len(attacks)+1, 60*time.Second)
	for _, dl := range ds {
		h := header(t, dl.Data)
		if to := field(h, "To"); to != "undisclosed-recipients:;" || len(dl.Rcpts) != 2 {
			t.Errorf("%s: delivered To %q to %q", field(h, "Subject"), to, dl.Rcpts)
		}
	}
	select {
	case err := <-d.exited:
		t.Fatalf("bccguard exited: %v\n%s", err, d.log)
	default:
	}
	if !strings.Contains(d.log.String(), "level=WARN") {
		t.Errorf("malformed packets not logged at warn:\n%s", d.log)
	}
}

// TestIdleCrowdAtTheSessionCap: local connections that negotiate and then
// say nothing fill the session cap. Postfix's next message is tempfailed
// at once (not after milter timeouts), /readyz says why, and mail flows
// again as soon as the crowd is gone.
func TestIdleCrowdAtTheSessionCap(t *testing.T) {
	metricsAddr := freeaddr.Loopback(t)
	sink, d, pf := setup(t, cityConfig+"metrics_listen: "+metricsAddr+"\n")
	sessions := 2000 // milter.MaxSessions
	crowd := make([]net.Conn, 0, sessions)
	for range sessions {
		crowd = append(crowd, milterAttacker(t, d.addr, true, nil))
	}
	resp, err := http.Get("http://" + metricsAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "session cap") {
		t.Errorf("readyz with the cap full: %d %q", resp.StatusCode, body)
	}
	err = sendConverted(t, pf, "during the crowd")
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code/100 != 4 {
		t.Fatalf("mail with the cap full: %v, want a temporary failure", err)
	}
	for _, c := range crowd {
		c.Close()
	}
	deadline := time.Now().Add(30 * time.Second)
	for sendConverted(t, pf, "after the crowd") != nil {
		if time.Now().After(deadline) {
			t.Fatal("mail still refused after the crowd left")
		}
		time.Sleep(100 * time.Millisecond)
	}
	dl := sink.WaitFor(t, 1, 60*time.Second)[0]
	if to := field(header(t, dl.Data), "To"); to != "undisclosed-recipients:;" {
		t.Errorf("delivered To %q", to)
	}
	resp, err = http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "bccguard_sessions_refused_total") || strings.Contains(string(body), "bccguard_sessions_refused_total 0\n") {
		t.Errorf("refused sessions not counted")
	}
}
