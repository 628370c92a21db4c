package reinject_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/bccguard/bccguard/internal/postfixtest"
	"github.com/bccguard/bccguard/reinject"
)

// TestHandOverToPostfix hands messages to a real Postfix's reinjection
// service: several transactions over one connection, the null sender, DSN
// parameters, a virtual alias (the service must keep address mappings) and
// a message Postfix refuses at the end of DATA, which must not count.
func TestHandOverToPostfix(t *testing.T) {
	sink := postfixtest.StartSink(t)
	pf := postfixtest.Start(t, postfixtest.Options{
		// The main smtpd's milter is unreachable and tempfails every
		// message: only a service without milters gets mail through.
		Milter:   "inet:127.0.0.1:1",
		RelayTo:  sink.Addr(),
		Reinject: true,
		Extra: map[string]string{
			"virtual_alias_domains": "alias.example",
			"virtual_alias_maps":    "inline:{ {team@alias.example=carol@example.org} }",
			"message_size_limit":    "200000",
		},
	})
	if pf.ReinjectAddr() == "" {
		t.Fatal("no reinjection service")
	}
	msg := func(subject string) *strings.Reader {
		return strings.NewReader("From: a@example.com\nTo: x@example.org\nSubject: " + subject + "\n\nbody of " + subject + "\n.dot\n")
	}
	txs := []reinject.Transaction{
		{
			Mail: reinject.Mail{From: "", Ret: smtp.DSNReturnHeaders, EnvID: "E1"},
			Rcpts: []reinject.Rcpt{
				{Addr: "bob@example.org", Notify: []smtp.DSNNotify{smtp.DSNNotifyFailure}, ORcptType: smtp.DSNAddressTypeRFC822, ORcpt: "Bob@example.org"},
				{Addr: "dan@example.org"},
			},
			Message: msg("one"),
		},
		{Mail: reinject.Mail{From: "a@example.com"}, Rcpts: []reinject.Rcpt{{Addr: "team@alias.example"}}, Message: msg("two")},
		{Mail: reinject.Mail{From: "a@example.com"}, Rcpts: []reinject.Rcpt{{Addr: "big@example.org"}},
			Message: strings.NewReader("Subject: big\n\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", 4000))},
		{Mail: reinject.Mail{From: "a@example.com", SMTPUTF8: true}, Rcpts: []reinject.Rcpt{{Addr: "ユーザー@example.org"}}, Message: msg("four")},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := reinject.Send(ctx, reinject.Options{Address: "inet:" + pf.ReinjectAddr(), Timeout: 10 * time.Second}, txs)
	for i, want := range []bool{true, true, false, true} {
		if res[i].HandedOver != want {
			t.Errorf("transaction %d: %+v, want handed over %v", i, res[i], want)
		}
		if want && res[i].QueueID == "" {
			t.Errorf("transaction %d: no queue id in %+v", i, res[i])
		}
	}
	var se *smtp.SMTPError
	if !errors.As(res[2].Err, &se) || se.Code != 552 {
		t.Errorf("oversized message: %v, want a 552", res[2].Err)
	}

	got := sink.WaitFor(t, 3, 20*time.Second)
	bySubject := map[string]postfixtest.Delivery{}
	for _, d := range got {
		for _, s := range []string{"one", "two", "four", "big"} {
			if strings.Contains(string(d.Data), "Subject: "+s+"\r\n") {
				bySubject[s] = d
			}
		}
	}
	if d := bySubject["one"]; d.From != "" || !slices.Equal(sorted(d.Rcpts), []string{"bob@example.org", "dan@example.org"}) {
		t.Errorf("null sender message: <%s> %q", d.From, d.Rcpts)
	}
	if d := bySubject["two"]; !slices.Equal(d.Rcpts, []string{"carol@example.org"}) {
		t.Errorf("the alias went to %q, want its target", d.Rcpts)
	}
	if d := bySubject["four"]; !slices.Equal(d.Rcpts, []string{"ユーザー@example.org"}) {
		t.Errorf("SMTPUTF8 message went to %q", d.Rcpts)
	}
	if _, ok := bySubject["big"]; ok {
		t.Error("the refused message was delivered")
	}
	if len(got) != 3 {
		t.Errorf("%d deliveries, want 3", len(got))
	}
	if d := bySubject["one"]; !strings.Contains(string(d.Data), "\r\n.dot\r\n") {
		t.Errorf("body changed:\n%s", d.Data)
	}

	// The main service still runs the (unreachable) milter.
	if err := pf.Send("a@example.com", []string{"bob@example.org"}, []byte("Subject: main\r\n\r\nx\r\n")); err == nil || !errors.As(err, &se) || se.Code/100 != 4 {
		t.Errorf("main smtpd without its milter: %v, want a 4xx", err)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// BenchmarkReplyToTheDot measures how long a real Postfix's reinjection
// service takes from a message's final dot to its 250 (cleanup's commit of
// the queue file, with fsync, then the reply): the part of a copy's
// hand-over in which Postfix already has the copy and a lost reply would
// leave bccguard thinking it has not. ns/op is the mean; p50-ms, p99-ms
// and max-ms the distribution. BCCGUARD_BENCH_DIR is not used: Postfix's
// queue is in its test instance's directory (t.TempDir()).
func BenchmarkReplyToTheDot(b *testing.B) {
	sink := postfixtest.StartSink(b)
	pf := postfixtest.Start(b, postfixtest.Options{Milter: "inet:127.0.0.1:1", RelayTo: sink.Addr(), Reinject: true})
	c, err := reinject.Dial(context.Background(), reinject.Options{Address: "inet:" + pf.ReinjectAddr(), Timeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	body := "From: a@example.com\nTo: x@example.org\nSubject: dot\n\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", 32)
	took := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		var dot time.Time
		res := c.Send(&reinject.Transaction{
			Mail: reinject.Mail{From: "a@example.com"}, Rcpts: []reinject.Rcpt{{Addr: "x@example.org"}},
			Message:   strings.NewReader(body),
			BeforeEnd: func() error { dot = time.Now(); return nil },
		})
		if !res.HandedOver {
			b.Fatal(res.Err)
		}
		took = append(took, time.Since(dot))
	}
	b.StopTimer()
	slices.Sort(took)
	var sum time.Duration
	for _, d := range took {
		sum += d
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(float64(sum)/float64(len(took)), "ns/op")
	b.ReportMetric(ms(took[len(took)/2]), "p50-ms")
	b.ReportMetric(ms(took[len(took)*99/100]), "p99-ms")
	b.ReportMetric(ms(took[len(took)-1]), "max-ms")
}
