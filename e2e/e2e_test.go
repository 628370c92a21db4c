// Package e2e tests bccguard end to end: the real daemon binary behind a
// private Postfix instance, checked by what Postfix actually delivers to
// an SMTP sink.
package e2e

import (
	"bytes"
	"errors"
	"fmt"
	netsmtp "net/smtp"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/bccguard/bccguard/config"
	"github.com/bccguard/bccguard/internal/freeaddr"
	"github.com/bccguard/bccguard/internal/postfixtest"
	"github.com/bccguard/bccguard/policy"
)

const cityConfig = `
internal_domains: [city.example.jp, .city.example.jp]
log_level: debug
`

// setup starts a sink, the daemon with cfg, and Postfix in front of it.
func setup(t *testing.T, cfg string) (*postfixtest.Sink, *daemon, *postfixtest.Instance) {
	t.Helper()
	sink := postfixtest.StartSink(t)
	d := startDaemon(t, writeConfig(t, cfg), freeaddr.Loopback(t))
	pf := postfixtest.Start(t, postfixtest.Options{
		Milter:        "inet:" + d.addr,
		DefaultAction: "tempfail",
		RelayTo:       sink.Addr(),
	})
	return sink, d, pf
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func header(t *testing.T, msg []byte) []policy.Field {
	t.Helper()
	h, err := policy.ReadHeader(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("%v\n%s", err, msg)
	}
	return h
}

func fields(h []policy.Field, name string) []string {
	var out []string
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			out = append(out, f.Value)
		}
	}
	return out
}

func field(h []policy.Field, name string) string {
	return strings.Join(fields(h, name), "\n")
}

// envelope returns the addresses `bccguard check` would use by default.
func envelope(h []policy.Field) []string {
	var out []string
	seen := map[string]bool{}
	for _, name := range []string{"To", "Cc", "Bcc"} {
		for _, v := range fields(h, name) {
			for _, a := range policy.ParseAddressField(v).Addrs {
				if a.Domain == "" {
					continue // a bare name: not a recipient the client gives
				}
				if !seen[strings.ToLower(a.Addr)] {
					seen[strings.ToLower(a.Addr)] = true
					out = append(out, smtpAddr(a.Addr))
				}
			}
		}
	}
	if len(out) == 0 {
		out = []string{"someone@ext.example"}
	}
	return out
}

// smtpAddr quotes the local part again where the parser removed quotes,
// as a mail client does in RCPT TO.
func smtpAddr(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	local := addr[:i]
	if strings.ContainsAny(local, " ,\"@()<>[]:;") {
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(local) + `"` + addr[i:]
	}
	return addr
}

// normalizeValue makes header values comparable across Postfix's
// re-folding: Postfix passes folded lines through, but line ends differ.
func normalizeValue(v string) string {
	return strings.Join(strings.Fields(strings.NewReplacer("\r", "", "\n", "").Replace(v)), " ")
}

// TestHeadersInTheWild sends each fixture through Postfix and checks that
// what is delivered is exactly what the policy (the code `bccguard check`
// runs) predicts, that every envelope recipient gets the message once, and
// that no To address is visible after a conversion.
func TestHeadersInTheWild(t *testing.T) {
	sink, d, pf := setup(t, cityConfig)
	pcfg := loadPolicy(t, cityConfig)
	want := map[string]string{
		"two-external.eml":      "convert",
		"internal-only.eml":     "pass",
		"one-external.eml":      "pass",
		"mixed.eml":             "convert",
		"several-to-fields.eml": "convert",
		"group.eml":             "convert",
		"folded-comments.eml":   "convert",
		"quoted-local.eml":      "convert",
		"upper-case.eml":        "pass",
		"idn.eml":               "convert",
		"utf8-names.eml":        "convert",
		"encoded-names.eml":     "convert",
		"broken-entry.eml":      "convert",
		"bare-names.eml":        "convert",
	}
	names, _ := filepath.Glob("testdata/*.eml")
	if len(names) != len(want) {
		t.Fatalf("testdata has %d fixtures, the table %d", len(names), len(want))
	}
	type sent struct {
		name   string
		in     []policy.Field
		rcpts  []string
		expect policy.Decision
	}
	bySubject := map[string]sent{}
	for _, path := range names {
		name := filepath.Base(path)
		msg := readFixture(t, name)
		h := header(t, msg)
		s := sent{name: name, in: h, rcpts: envelope(h)}
		s.expect = policy.Decide(pcfg, policy.Message{Sender: "staff@city.example.jp", Header: h})
		if s.expect.Action.String() != want[name] {
			t.Errorf("%s: policy says %v (%s), table says %s", name, s.expect.Action, s.expect.Reason, want[name])
		}
		bySubject[field(h, "Subject")] = s
		if err := pf.Send("staff@city.example.jp", s.rcpts, msg); err != nil {
			t.Fatalf("%s: send: %v\n%s", name, err, d.log)
		}
	}
	deliveries := sink.WaitFor(t, len(names), 60*time.Second)
	got := map[string]int{}
	for _, dl := range deliveries {
		h := header(t, dl.Data)
		s, ok := bySubject[field(h, "Subject")]
		if !ok {
			t.Fatalf("unexpected delivery:\n%s", dl.Data)
		}
		got[s.name]++
		t.Run(s.name, func(t *testing.T) {
			// Every envelope recipient, exactly once.
			// go-smtp hands the sink quoted local parts unquoted.
			unquote := strings.NewReplacer(`"`, "")
			var rc, ex []string
			for _, r := range dl.Rcpts {
				rc = append(rc, unquote.Replace(r))
			}
			for _, r := range s.rcpts {
				ex = append(ex, unquote.Replace(r))
			}
			sort.Strings(rc)
			sort.Strings(ex)
			if strings.Join(rc, ",") != strings.Join(ex, ",") {
				t.Errorf("delivered to %q, want %q", rc, ex)
			}
			// The delivered To and Cc are exactly what the policy predicts.
			predicted := policy.Apply(s.in, s.expect.Edits)
			for _, name := range []string{"To", "Cc"} {
				g, w := fields(h, name), fields(predicted, name)
				if len(g) != len(w) {
					t.Errorf("%s fields: delivered %q, predicted %q", name, g, w)
					continue
				}
				for i := range g {
					if normalizeValue(g[i]) != normalizeValue(w[i]) {
						t.Errorf("%s: delivered %q, predicted %q", name, g[i], w[i])
					}
				}
			}
			if s.expect.Action != policy.Convert {
				if len(fields(h, "X-BCCGuard")) != 0 {
					t.Error("stamp header on a message that passed")
				}
				return
			}
			if tos := fields(h, "To"); len(tos) != 1 || tos[0] != "undisclosed-recipients:;" {
				t.Errorf("To = %q, want one undisclosed-recipients:;", tos)
			}
			if st := fields(h, "X-BCCGuard"); len(st) != 1 || strings.Contains(st[0], "@") {
				t.Errorf("stamp = %q", st)
			}
			// No To address may appear in any header field, except where
			// Postfix names the recipient itself in Received (never here:
			// several recipients share one delivery).
			for _, v := range fields(s.in, "To") {
				for _, a := range policy.LenientAddresses(v) {
					for _, f := range h {
						if strings.EqualFold(f.Name, "Cc") {
							continue
						}
						if strings.Contains(strings.ToLower(f.Value), strings.ToLower(a.Addr)) {
							t.Errorf("%s visible in %s: %q", a.Addr, f.Name, f.Value)
						}
					}
				}
			}
		})
	}
	for name := range want {
		if got[name] != 1 {
			t.Errorf("%s delivered %d times, want once", name, got[name])
		}
	}
	if !strings.Contains(d.log.String(), "queue_id=") || strings.Contains(d.log.String(), "queue_id=\"\"") {
		t.Errorf("decisions are not logged with Postfix's queue id:\n%s", d.log)
	}
}

func loadPolicy(t *testing.T, yaml string) *policy.Config {
	t.Helper()
	c, err := config.Load(writeConfig(t, yaml))
	if err != nil {
		t.Fatal(err)
	}
	return c.Policy
}

// TestTwoExternalArriveUndisclosed is the acceptance test of the core
// issue: two external To addresses through the real Postfix arrive with
// "To: undisclosed-recipients:;" at both recipients; the Cc stays.
func TestTwoExternalArriveUndisclosed(t *testing.T) {
	sink, _, pf := setup(t, cityConfig)
	msg := []byte("From: staff@city.example.jp\r\nTo: a@ext.example, b@other.example\r\nCc: c@city.example.jp\r\nSubject: acceptance\r\n\r\nhello\r\n")
	rcpts := []string{"a@ext.example", "b@other.example", "c@city.example.jp"}
	if err := pf.Send("staff@city.example.jp", rcpts, msg); err != nil {
		t.Fatal(err)
	}
	ds := sink.WaitFor(t, 1, 30*time.Second)
	n := 0
	for _, dl := range ds {
		n += len(dl.Rcpts)
		h := header(t, dl.Data)
		if got := fields(h, "To"); len(got) != 1 || got[0] != "undisclosed-recipients:;" {
			t.Errorf("To = %q", got)
		}
		if got := field(h, "Cc"); got != "c@city.example.jp" {
			t.Errorf("Cc = %q", got)
		}
		if !bytes.Contains(dl.Data, []byte("\r\n\r\nhello\r\n")) {
			t.Errorf("body changed:\n%s", dl.Data)
		}
	}
	if n != 3 {
		t.Errorf("%d recipients delivered, want 3: %+v", n, ds)
	}
}

// TestMilterDownTempfails: with bccguard stopped and milter_default_action
// = tempfail, Postfix refuses the message with a 4xx and delivers nothing,
// so the sending client keeps it and retries; once bccguard runs again the
// retry is delivered converted.
func TestMilterDownTempfails(t *testing.T) {
	sink, d, pf := setup(t, cityConfig)
	d.stop(t)
	msg := []byte("From: staff@city.example.jp\r\nTo: a@ext.example, b@other.example\r\nSubject: while down\r\n\r\nx\r\n")
	rcpts := []string{"a@ext.example", "b@other.example"}
	err := pf.Send("staff@city.example.jp", rcpts, msg)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code/100 != 4 {
		t.Fatalf("send with bccguard down: %v; want a 4xx reply", err)
	}
	time.Sleep(2 * time.Second)
	if n := len(sink.Deliveries()); n != 0 {
		t.Fatalf("%d messages delivered while bccguard was down", n)
	}
	startDaemon(t, writeConfig(t, cityConfig), d.addr)
	if err := pf.Send("staff@city.example.jp", rcpts, msg); err != nil {
		t.Fatalf("retry: %v", err)
	}
	ds := sink.WaitFor(t, 1, 30*time.Second)
	if got := fields(header(t, ds[0].Data), "To"); len(got) != 1 || got[0] != "undisclosed-recipients:;" {
		t.Fatalf("To after restart = %q", got)
	}
}

// TestSeveralMessagesInOneSession sends three messages over one SMTP
// connection (one milter session): each is decided on its own.
func TestSeveralMessagesInOneSession(t *testing.T) {
	sink, d, pf := setup(t, cityConfig)
	c, err := netsmtp.Dial(pf.SMTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test.invalid"); err != nil {
		t.Fatal(err)
	}
	msgs := []struct {
		subject, to string
		rcpts       []string
		convert     bool
	}{
		{"first", "a@ext.example, b@other.example", []string{"a@ext.example", "b@other.example"}, true},
		{"second", "a@ext.example", []string{"a@ext.example"}, false},
		{"third", "a@city.example.jp, b@other.example", []string{"a@city.example.jp", "b@other.example"}, true},
		{"fourth", "a@city.example.jp, b@city.example.jp", []string{"a@city.example.jp", "b@city.example.jp"}, false},
	}
	for _, m := range msgs {
		if err := c.Mail("staff@city.example.jp"); err != nil {
			t.Fatal(err)
		}
		for _, r := range m.rcpts {
			if err := c.Rcpt(r); err != nil {
				t.Fatal(err)
			}
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(w, "From: staff@city.example.jp\r\nTo: %s\r\nSubject: %s\r\n\r\nbody\r\n", m.to, m.subject)
		if err := w.Close(); err != nil {
			t.Fatalf("%s: %v\n%s", m.subject, err, d.log)
		}
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	ds := sink.WaitFor(t, len(msgs), 30*time.Second)
	for _, m := range msgs {
		found := false
		for _, dl := range ds {
			h := header(t, dl.Data)
			if field(h, "Subject") != m.subject {
				continue
			}
			found = true
			to := field(h, "To")
			if m.convert && to != "undisclosed-recipients:;" || !m.convert && to != m.to {
				t.Errorf("%s: To = %q (convert %v)", m.subject, to, m.convert)
			}
		}
		if !found {
			t.Errorf("%s not delivered", m.subject)
		}
	}
}
