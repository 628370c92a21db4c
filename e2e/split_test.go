package e2e

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/bccguard/bccguard/internal/freeaddr"
	"github.com/bccguard/bccguard/internal/postfixtest"
)

// splitConfig is the city hall with delivery: split, the planning
// department (a subdomain) with move: external, copies handed back to the
// instance's reinjection service.
func splitConfig(reinjectAddr, stateDir string) string {
	return fmt.Sprintf(`
internal_domains: [city.example.jp, .city.example.jp]
log_level: debug
reinject:
  address: inet:%s
  timeout: 5s
policy:
  delivery: split
split:
  state_dir: %s
  max_recipients: 5
  max_message_bytes: 300000
domains:
  - domain: city.example.jp
  - domain: kikaku.city.example.jp
    move: external
  - domain: shiken.city.example.jp
    dry_run: true
`, reinjectAddr, stateDir)
}

// splitSetup starts a sink, Postfix with the reinjection service (and a
// virtual alias team@alias.example -> carol@example.org), and the daemon
// with delivery: split.
func splitSetup(t *testing.T) (*postfixtest.Sink, *daemon, *postfixtest.Instance, string) {
	t.Helper()
	return splitSetupWith(t, postfixtest.StartSink(t))
}

func splitSetupWith(t *testing.T, sink *postfixtest.Sink) (*postfixtest.Sink, *daemon, *postfixtest.Instance, string) {
	t.Helper()
	addr := freeaddr.Loopback(t)
	pf := postfixtest.Start(t, postfixtest.Options{
		Milter: "inet:" + addr, DefaultAction: "tempfail", RelayTo: sink.Addr(), Reinject: true,
		Extra: map[string]string{
			"virtual_alias_domains": "alias.example",
			"virtual_alias_maps":    "inline:{ {team@alias.example=carol@example.org} }",
		},
	})
	cfg := writeConfig(t, splitConfig(pf.ReinjectAddr(), t.TempDir()))
	return sink, startDaemon(t, cfg, addr), pf, cfg
}

// received is what one recipient got.
type received struct {
	to, cc, stamp string
	body          []byte
}

// byRecipient waits until every recipient in want has a delivery (and a
// second more, for duplicates), then returns what each got, for subject.
func byRecipient(t *testing.T, sink *postfixtest.Sink, subject string, want []string) map[string][]received {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute) // ends as soon as all have mail
	for {
		got := collect(t, sink)[subject]
		all := true
		for _, w := range want {
			all = all && len(got[w]) > 0
		}
		if all {
			time.Sleep(time.Second)
			return collect(t, sink)[subject]
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not every recipient of %q got mail: %v", subject, want, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// collect returns what the sink received, by subject and recipient.
func collect(t *testing.T, sink *postfixtest.Sink) map[string]map[string][]received {
	t.Helper()
	out := map[string]map[string][]received{}
	for _, d := range sink.Deliveries() {
		h := header(t, d.Data)
		subject := field(h, "Subject")
		if out[subject] == nil {
			out[subject] = map[string][]received{}
		}
		_, body, _ := bytes.Cut(d.Data, []byte("\r\n\r\n"))
		r := received{to: field(h, "To"), cc: field(h, "Cc"), stamp: field(h, "X-BCCGuard"), body: body}
		for _, rc := range d.Rcpts {
			out[subject][rc] = append(out[subject][rc], r)
		}
	}
	return out
}

// exactlyOnce checks that each recipient got one message, and nobody else
// got this subject.
func exactlyOnce(t *testing.T, subject string, got map[string][]received, want []string) {
	t.Helper()
	for _, w := range want {
		if len(got[w]) != 1 {
			t.Errorf("%s: %s got %d messages, want 1", subject, w, len(got[w]))
		}
	}
	for r := range got {
		if !slices.Contains(want, r) {
			t.Errorf("%s: %s got mail and should not", subject, r)
		}
	}
}

// onceHidden: each of want got the message exactly once, as the hidden
// original (the split fell back to hide).
func onceHidden(t *testing.T, subject string, got map[string][]received, want []string) {
	t.Helper()
	exactlyOnce(t, subject, got, want)
	for rc, r := range got {
		if r[0].to != "undisclosed-recipients:;" {
			t.Errorf("%s: %s: To %q", subject, rc, r[0].to)
		}
	}
}

func TestSplitThroughPostfix(t *testing.T) {
	sink, d, pf, _ := splitSetup(t)
	body := "Dear all,\r\n.a line with a leading dot\r\n\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\r\n" + strings.Repeat("x", 200) + "\r\n"
	msg := func(subject, to, cc string) []byte {
		h := "From: Staff <staff@city.example.jp>\r\nTo: " + to + "\r\n"
		if cc != "" {
			h += "Cc: " + cc + "\r\n"
		}
		return []byte(h + "Subject: " + subject + "\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@city.example.jp>\r\n" +
			"Date: Wed, 2 Dec 2026 10:00:00 +0900\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body)
	}

	t.Run("move all", func(t *testing.T) {
		rcpts := []string{"a@ext.example", "b@other.example", "colleague@city.example.jp", "cc@ext.example", "hidden@ext.example"}
		if err := pf.Send("staff@city.example.jp", rcpts, msg("split all", `"Ext A" <A@Ext.example>, b@other.example, colleague@city.example.jp`, "cc@ext.example")); err != nil {
			t.Fatal(err)
		}
		got := byRecipient(t, sink, "split all", rcpts)
		exactlyOnce(t, "split all", got, rcpts)
		for rc, to := range map[string]string{"a@ext.example": `"Ext A" <A@Ext.example>`, "b@other.example": "b@other.example", "colleague@city.example.jp": "colleague@city.example.jp"} {
			if r := got[rc]; len(r) == 1 && (r[0].to != to || r[0].cc != "cc@ext.example" || !strings.HasPrefix(r[0].stamp, "split;")) {
				t.Errorf("copy for %s: To %q Cc %q stamp %q", rc, r[0].to, r[0].cc, r[0].stamp)
			}
		}
		for _, rc := range []string{"cc@ext.example", "hidden@ext.example"} {
			if r := got[rc]; len(r) == 1 && (r[0].to != "undisclosed-recipients:;" || r[0].cc != "cc@ext.example") {
				t.Errorf("original for %s: To %q Cc %q", rc, r[0].to, r[0].cc)
			}
		}
		for rc, rs := range got {
			for _, r := range rs {
				if string(r.body) != body {
					t.Errorf("%s: body changed: %q", rc, r.body)
				}
			}
		}
	})

	t.Run("subdomain with move external", func(t *testing.T) {
		rcpts := []string{"x@ext.example", "y@other.example", "in@city.example.jp"}
		if err := pf.Send("planner@kikaku.city.example.jp", rcpts, msg("split external", "x@ext.example, y@other.example, in@city.example.jp", "")); err != nil {
			t.Fatal(err)
		}
		got := byRecipient(t, sink, "split external", rcpts)
		exactlyOnce(t, "split external", got, rcpts)
		if r := got["x@ext.example"]; len(r) == 1 && normalizeValue(r[0].to) != "x@ext.example, in@city.example.jp" {
			t.Errorf("copy for x shows To %q", r[0].to)
		}
		if r := got["in@city.example.jp"]; len(r) == 1 && r[0].to != "in@city.example.jp" {
			t.Errorf("the original for the internal recipient shows To %q", r[0].to)
		}
	})

	t.Run("everyone has a copy: original discarded; alias", func(t *testing.T) {
		rcpts := []string{"team@alias.example", "z@ext.example"}
		if err := pf.Send("staff@city.example.jp", rcpts, msg("split alias", "team@alias.example, z@ext.example", "")); err != nil {
			t.Fatal(err)
		}
		want := []string{"carol@example.org", "z@ext.example"}
		got := byRecipient(t, sink, "split alias", want)
		exactlyOnce(t, "split alias", got, want)
		if r := got["carol@example.org"]; len(r) == 1 && r[0].to != "team@alias.example" {
			t.Errorf("the alias's copy shows To %q", r[0].to)
		}
	})

	t.Run("several messages per session", func(t *testing.T) {
		c, err := smtp.Dial(pf.SMTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var all []string
		for i := range 3 {
			rcpts := []string{fmt.Sprintf("s%d@ext.example", i), fmt.Sprintf("t%d@other.example", i)}
			all = append(all, rcpts...)
			m := msg(fmt.Sprintf("session %d", i), rcpts[0]+", "+rcpts[1], "")
			if err := c.SendMail("staff@city.example.jp", rcpts, bytes.NewReader(m)); err != nil {
				t.Fatal(err)
			}
		}
		c.Quit()
		for i := range 3 {
			s := fmt.Sprintf("session %d", i)
			want := all[2*i : 2*i+2]
			got := byRecipient(t, sink, s, want)
			exactlyOnce(t, s, got, want)
			if r := got[want[1]]; len(r) == 1 && r[0].to != want[1] {
				t.Errorf("%s: copy shows %q", s, r[0].to)
			}
		}
	})

	t.Run("over max_recipients: hide", func(t *testing.T) {
		var rcpts []string
		for i := range 6 {
			rcpts = append(rcpts, fmt.Sprintf("m%d@ext.example", i))
		}
		if err := pf.Send("staff@city.example.jp", rcpts, msg("too many", strings.Join(rcpts, ", "), "")); err != nil {
			t.Fatal(err)
		}
		got := byRecipient(t, sink, "too many", rcpts)
		exactlyOnce(t, "too many", got, rcpts)
		for rc, r := range got {
			if r[0].to != "undisclosed-recipients:;" || !strings.HasPrefix(r[0].stamp, "converted;") {
				t.Errorf("%s: To %q stamp %q", rc, r[0].to, r[0].stamp)
			}
		}
	})

	t.Run("over max_message_bytes: hide", func(t *testing.T) {
		rcpts := []string{"big1@ext.example", "big2@other.example"}
		m := append(msg("too big", strings.Join(rcpts, ", "), ""), bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n"), 5000)...)
		if err := pf.Send("staff@city.example.jp", rcpts, m); err != nil {
			t.Fatal(err)
		}
		got := byRecipient(t, sink, "too big", rcpts)
		onceHidden(t, "too big", got, rcpts)
	})

	t.Run("dry run changes nothing", func(t *testing.T) {
		rcpts := []string{"d1@ext.example", "d2@other.example"}
		if err := pf.Send("tester@shiken.city.example.jp", rcpts, msg("dry run", "d1@ext.example, d2@other.example", "")); err != nil {
			t.Fatal(err)
		}
		got := byRecipient(t, sink, "dry run", rcpts)
		exactlyOnce(t, "dry run", got, rcpts)
		for rc, r := range got {
			if r[0].to != "d1@ext.example, d2@other.example" || r[0].stamp != "" {
				t.Errorf("%s: To %q stamp %q", rc, r[0].to, r[0].stamp)
			}
		}
	})

	log := d.log.String()
	for _, want := range []string{"dry_run=true sender_domain=shiken.city.example.jp", "convert_cc=false delivery=split copies=2 reason=", "delivery=split", "copies=3", "split_fallback=max_recipients", "split_fallback=max_message_bytes", "original_discarded=true"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// TestSplitKeepsDSNParameters: each copy carries its recipient's RCPT
// parameters (NOTIFY, ORCPT) and the message's MAIL parameters (RET,
// ENVID, SMTPUTF8), all the way through Postfix.
func TestSplitKeepsDSNParameters(t *testing.T) {
	sink, _, pf, _ := splitSetupWith(t, postfixtest.StartDSNSink(t))
	c, err := smtp.Dial(pf.SMTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("staff@city.example.jp", &smtp.MailOptions{Return: smtp.DSNReturnHeaders, EnvelopeID: "ENV42", UTF8: true}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		addr string
		opts *smtp.RcptOptions
	}{
		{"u1@ext.example", &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyFailure}, OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: "Original+1@ext.example"}},
		{"u2@other.example", &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifyNever}}},
	} {
		if err := c.Rcpt(r.addr, r.opts); err != nil {
			t.Fatal(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("From: スタッフ <staff@city.example.jp>\r\nTo: u1@ext.example, u2@other.example\r\nSubject: dsn\r\nMessage-ID: <dsn@city.example.jp>\r\n\r\nbody\r\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	rcpts := []string{"u1@ext.example", "u2@other.example"}
	got := byRecipient(t, sink, "dsn", rcpts)
	exactlyOnce(t, "dsn", got, rcpts)
	for _, d := range sink.Deliveries() {
		if !strings.Contains(string(d.Data), "Subject: dsn\r\n") {
			continue
		}
		if d.Mail.Return != smtp.DSNReturnHeaders || d.Mail.EnvelopeID != "ENV42" || !d.Mail.UTF8 {
			t.Errorf("copy for %q: MAIL parameters %+v", d.Rcpts, d.Mail)
		}
		o := d.RcptOptions[0]
		switch d.Rcpts[0] {
		case "u1@ext.example":
			if !slices.Equal(o.Notify, []smtp.DSNNotify{"SUCCESS", "FAILURE"}) || o.OriginalRecipient != "Original+1@ext.example" {
				t.Errorf("copy for u1: RCPT parameters %+v", o)
			}
		default:
			if !slices.Equal(o.Notify, []smtp.DSNNotify{"NEVER"}) {
				t.Errorf("copy for %s: RCPT parameters %+v", d.Rcpts[0], o)
			}
		}
	}
}
