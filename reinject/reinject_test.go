package reinject

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// received is one transaction as the test server saw it.
type received struct {
	from  string
	mail  smtp.MailOptions
	rcpts []string
	ropts []smtp.RcptOptions
	data  string
}

// testServer is a go-smtp server on 127.0.0.1:0 that records what it gets.
// It refuses recipients starting with "refuse", messages containing
// "REFUSE-DATA", stalls for 2 s before its reply to a recipient starting
// with "stall" and to the final dot of a message containing "STALL", and
// holds its reply to the final dot of a message containing "SLOWDOT" for
// 800 ms. When gate is set, it reads no message until gate is closed.
type testServer struct {
	addr  string
	gate  chan struct{}
	mu    sync.Mutex
	got   []received
	conns int
	datas int // messages read to their end or failed
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{addr: l.Addr().String()}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		ts.mu.Lock()
		ts.conns++
		ts.mu.Unlock()
		return &testSession{ts: ts}, nil
	}))
	srv.Domain = "test.invalid"
	srv.EnableSMTPUTF8 = true
	srv.EnableDSN = true
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return ts
}

func (ts *testServer) received() []received {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return slices.Clone(ts.got)
}

type testSession struct {
	ts  *testServer
	cur received
}

func (s *testSession) Mail(from string, o *smtp.MailOptions) error {
	s.cur = received{from: from}
	if o != nil {
		s.cur.mail = *o
	}
	return nil
}

func (s *testSession) Rcpt(to string, o *smtp.RcptOptions) error {
	if strings.HasPrefix(to, "refuse") {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	if strings.HasPrefix(to, "stall") {
		time.Sleep(2 * time.Second)
	}
	s.cur.rcpts = append(s.cur.rcpts, to)
	if o != nil {
		s.cur.ropts = append(s.cur.ropts, *o)
	}
	return nil
}

func (s *testSession) Data(r io.Reader) error {
	if s.ts.gate != nil {
		<-s.ts.gate
	}
	b, err := io.ReadAll(r)
	s.ts.mu.Lock()
	s.ts.datas++
	s.ts.mu.Unlock()
	if err != nil {
		return err
	}
	if strings.Contains(string(b), "STALL") {
		time.Sleep(2 * time.Second)
	}
	if strings.Contains(string(b), "SLOWDOT") {
		time.Sleep(800 * time.Millisecond)
	}
	if strings.Contains(string(b), "REFUSE-DATA") {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "content refused"}
	}
	s.cur.data = string(b)
	s.ts.mu.Lock()
	s.ts.got = append(s.ts.got, s.cur)
	s.ts.mu.Unlock()
	return nil
}

func (s *testSession) Reset()        { s.cur = received{} }
func (s *testSession) Logout() error { return nil }

func tx(from string, body string, rcpts ...Rcpt) Transaction {
	return Transaction{Mail: Mail{From: from}, Rcpts: rcpts, Message: strings.NewReader(body)}
}

func TestParametersReachTheServer(t *testing.T) {
	ts := startServer(t)
	txs := []Transaction{{
		Mail: Mail{From: "", Body: smtp.Body8BitMIME, SMTPUTF8: true, Ret: smtp.DSNReturnHeaders, EnvID: "env+id 1"},
		Rcpts: []Rcpt{
			{Addr: "bob@example.com", Notify: []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyFailure}, ORcptType: smtp.DSNAddressTypeRFC822, ORcpt: "Bob+x@example.com"},
			{Addr: "ann@example.com", Notify: []smtp.DSNNotify{smtp.DSNNotifyNever}},
		},
		Message: strings.NewReader("Subject: x\n\n.leading dot\nbody\n"),
	}}
	res := Send(context.Background(), Options{Address: "inet:" + ts.addr, Timeout: 5 * time.Second}, txs)
	if !res[0].HandedOver || res[0].Err != nil {
		t.Fatalf("result %+v", res[0])
	}
	got := ts.received()
	if len(got) != 1 {
		t.Fatalf("server got %d transactions", len(got))
	}
	g := got[0]
	if g.from != "" || !g.mail.UTF8 || g.mail.Return != smtp.DSNReturnHeaders || g.mail.EnvelopeID != "env+id 1" || g.mail.Body != smtp.Body8BitMIME {
		t.Errorf("MAIL: from %q options %+v", g.from, g.mail)
	}
	if !slices.Equal(g.rcpts, []string{"bob@example.com", "ann@example.com"}) {
		t.Errorf("RCPT: %q", g.rcpts)
	}
	if o := g.ropts[0]; !slices.Equal(o.Notify, []smtp.DSNNotify{"SUCCESS", "FAILURE"}) || o.OriginalRecipient != "Bob+x@example.com" || o.OriginalRecipientType != smtp.DSNAddressTypeRFC822 {
		t.Errorf("RCPT bob options %+v", o)
	}
	if o := g.ropts[1]; !slices.Equal(o.Notify, []smtp.DSNNotify{"NEVER"}) || o.OriginalRecipient != "" {
		t.Errorf("RCPT ann options %+v", o)
	}
	if g.data != "Subject: x\r\n\r\n.leading dot\r\nbody\r\n" {
		t.Errorf("data %q", g.data)
	}
}

func TestRefusalsAreReportedAndTheConnectionGoesOn(t *testing.T) {
	ts := startServer(t)
	txs := []Transaction{
		tx("a@example.org", "Subject: 1\n\none\n", Rcpt{Addr: "one@example.com"}),
		tx("a@example.org", "Subject: 2\n\ntwo\n", Rcpt{Addr: "two@example.com"}, Rcpt{Addr: "refuse@example.com"}),
		tx("a@example.org", "Subject: 3\n\nREFUSE-DATA\n", Rcpt{Addr: "three@example.com"}),
		tx("a@example.org", "Subject: 4\n\nfour\n", Rcpt{Addr: "four@example.com"}),
	}
	res := Send(context.Background(), Options{Address: "inet:" + ts.addr, Timeout: 5 * time.Second}, txs)
	want := []bool{true, false, false, true}
	for i, r := range res {
		if r.HandedOver != want[i] || (r.Err == nil) != want[i] {
			t.Errorf("transaction %d: %+v, want handed over %v", i, r, want[i])
		}
	}
	var se *smtp.SMTPError
	if !errors.As(res[1].Err, &se) || se.Code != 550 || !strings.Contains(res[1].Err.Error(), "RCPT TO") {
		t.Errorf("refused RCPT: %v", res[1].Err)
	}
	if !errors.As(res[2].Err, &se) || se.Code != 554 || !strings.Contains(res[2].Err.Error(), "end of DATA") {
		t.Errorf("refused DATA: %v", res[2].Err)
	}
	var rcpts []string
	for _, g := range ts.received() {
		rcpts = append(rcpts, g.rcpts...)
	}
	if !slices.Equal(rcpts, []string{"one@example.com", "four@example.com"}) {
		t.Errorf("server accepted %q", rcpts)
	}
	if ts.conns != 1 {
		t.Errorf("%d connections, want 1", ts.conns)
	}
}

func TestATimeoutIsNotAHandOver(t *testing.T) {
	ts := startServer(t)
	txs := []Transaction{
		tx("a@example.org", "Subject: 1\n\nSTALL\n", Rcpt{Addr: "one@example.com"}),
		tx("a@example.org", "Subject: 2\n\ntwo\n", Rcpt{Addr: "two@example.com"}),
	}
	res := Send(context.Background(), Options{Address: "inet:" + ts.addr, Timeout: 300 * time.Millisecond}, txs)
	for i, r := range res {
		if r.HandedOver || r.Err == nil {
			t.Errorf("transaction %d: %+v, want a timeout", i, r)
		}
	}
	var ne net.Error
	if !errors.As(res[0].Err, &ne) || !ne.Timeout() {
		t.Errorf("first error is not a timeout: %v", res[0].Err)
	}
}

// TestTheContextDeadlineBoundsEverythingBeforeTheDot: a transaction whose
// final dot was not sent when ctx ends is abandoned (Postfix discards it).
func TestTheContextDeadlineBoundsEverythingBeforeTheDot(t *testing.T) {
	ts := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res := Send(ctx, Options{Address: "inet:" + ts.addr, Timeout: time.Minute},
		[]Transaction{tx("a@example.org", "Subject: 1\n\none\n", Rcpt{Addr: "stall@example.com"})})
	if res[0].HandedOver || res[0].Err == nil {
		t.Fatalf("%+v, want a failure", res[0])
	}
	// The context ended it, not the stall (which would have let the
	// message through) nor the minute of Options.Timeout.
	if !errors.Is(res[0].Err, context.DeadlineExceeded) {
		t.Errorf("error %v, want the context's deadline", res[0].Err)
	}
	time.Sleep(2500 * time.Millisecond) // past the server's stall
	if got := ts.received(); len(got) != 0 {
		t.Errorf("server got %d messages, want none", len(got))
	}
}

// TestTheReplyToTheDotOutlivesTheContext: once the final dot is sent,
// Postfix has queued the message (it commits before it writes 250), so
// the reply is waited for on the per-command timeout even when ctx ends
// meanwhile, and the message counts as handed over. Cutting it at ctx's
// end would leave it in Postfix's queue while the caller keeps its
// recipient on the original: two messages. The transaction after it is
// not started.
func TestTheReplyToTheDotOutlivesTheContext(t *testing.T) {
	ts := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res := Send(ctx, Options{Address: "inet:" + ts.addr, Timeout: 5 * time.Second}, []Transaction{
		tx("a@example.org", "Subject: 1\n\nSLOWDOT\n", Rcpt{Addr: "one@example.com"}),
		tx("a@example.org", "Subject: 2\n\ntwo\n", Rcpt{Addr: "two@example.com"}),
	})
	if !res[0].HandedOver || res[0].Err != nil {
		t.Errorf("the copy Postfix queued: %+v, want handed over", res[0])
	}
	if res[1].HandedOver || !errors.Is(res[1].Err, context.DeadlineExceeded) {
		t.Errorf("the transaction after the deadline: %+v, want not started", res[1])
	}
	if got := ts.received(); len(got) != 1 || got[0].rcpts[0] != "one@example.com" {
		t.Errorf("server got %+v, want only the first", got)
	}
}

// TestCtxBoundsTheWriteOfTheDot: the final dot goes out in one write with
// the message's last bytes, and that write is bounded by ctx like every
// write before it; only the reply to a dot fully sent may come after
// ctx's end. Here Postfix stops reading at the end of the message (its
// socket buffers are full when the dot is written) and reads again a
// second after ctx ends, by its deadline (a split) or by cancellation (a
// notice at shutdown). The write is cut then: the message is not handed
// over, and the server, which never saw the whole dot, did not take it.
// Without the bound the write went on for the write timeout and the
// message was handed over after ctx's end (and the call could last a
// write timeout plus a reply timeout past it).
func TestCtxBoundsTheWriteOfTheDot(t *testing.T) {
	for _, tc := range []struct {
		name   string
		newCtx func(end time.Time) (context.Context, context.CancelFunc)
		want   error
	}{
		{"deadline", func(end time.Time) (context.Context, context.CancelFunc) {
			return context.WithDeadline(context.Background(), end)
		}, context.DeadlineExceeded},
		{"cancel", func(end time.Time) (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(time.Until(end), cancel)
			return ctx, cancel
		}, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t)
			ts.gate = make(chan struct{})
			// Time to connect and fill the buffers before ctx ends: ample
			// on a loaded machine (the test fails, not passes, when short).
			end := time.Now().Add(5 * time.Second)
			ctx, cancel := tc.newCtx(end)
			defer cancel()
			time.AfterFunc(time.Until(end.Add(time.Second)), func() { close(ts.gate) })
			res, err := sendIntoFullBuffers(ctx, ts)
			if err != nil {
				t.Fatalf("filling the socket buffers: %v", err)
			}
			if res.HandedOver || !errors.Is(res.Err, tc.want) || !strings.Contains(res.Err.Error(), "not sent in full") {
				t.Errorf("%+v, want the final dot cut by ctx", res)
			}
			// The server reads again after ctx's end: wait until it is
			// done with the message.
			for wait := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				ts.mu.Lock()
				n := ts.datas
				ts.mu.Unlock()
				if n > 0 {
					break
				}
				if time.Now().After(wait) {
					t.Fatal("the server never finished reading the message")
				}
			}
			if got := ts.received(); len(got) != 0 {
				t.Errorf("server took %d messages, want none", len(got))
			}
		})
	}
}

// sendIntoFullBuffers sends one message to ts, which reads none, with
// the socket buffers filled before the final dot, so that the write of
// the dot blocks. err says why the buffers could not be filled while ctx
// lasted.
func sendIntoFullBuffers(ctx context.Context, ts *testServer) (res Result, err error) {
	c, err := Dial(ctx, Options{Address: "inet:" + ts.addr, Timeout: 10 * time.Second})
	if err != nil {
		return res, err
	}
	defer c.Close()
	// 3.5 KiB of body, which go-smtp keeps in its 4 KiB buffer until the
	// dot: the write of the dot carries it.
	tx := tx("a@example.org", "Subject: 1\n\n"+strings.Repeat("body line\n", 350), Rcpt{Addr: "one@example.com"})
	tx.BeforeEnd = func() error {
		// Fill the socket buffers with body lines. A fixed send buffer
		// does not grow meanwhile (Linux grows it while memory allows,
		// and then a write of the dot found room).
		if err = c.conn.Conn.(*net.TCPConn).SetWriteBuffer(8 << 10); err != nil {
			return nil
		}
		lines := bytes.Repeat([]byte(strings.Repeat("x", 998)+"\r\n"), 64)
		for {
			c.conn.Conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			_, werr := c.conn.Conn.Write(lines)
			var ne net.Error
			if errors.As(werr, &ne) && ne.Timeout() {
				break
			}
			if werr != nil {
				err = werr
				return nil
			}
		}
		if ctx.Err() != nil {
			err = errors.New("the buffers were full only after ctx's end")
		}
		return nil
	}
	res = c.Send(&tx)
	return res, err
}

func TestNobodyListening(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	res := Send(context.Background(), Options{Address: "inet:" + addr, Timeout: time.Second},
		[]Transaction{tx("a@example.org", "x\n", Rcpt{Addr: "a@b"}), tx("a@example.org", "x\n", Rcpt{Addr: "a@b"})})
	for i, r := range res {
		if r.HandedOver || r.Err == nil || !strings.Contains(r.Err.Error(), "connect") {
			t.Errorf("transaction %d: %+v", i, r)
		}
	}
	if res := Send(context.Background(), Options{Address: "bogus"}, []Transaction{tx("", "x", Rcpt{Addr: "a@b"})}); res[0].Err == nil {
		t.Error("a bad address was accepted")
	}
}

func TestParseArgs(t *testing.T) {
	m := ParseMailArgs("", []string{"SIZE=100", "BODY=8bitmime", "SMTPUTF8", "RET=HDRS", "ENVID=a+2Bb", "AUTH=<>"})
	if m != (Mail{Body: "8BITMIME", SMTPUTF8: true, Ret: "HDRS", EnvID: "a+b"}) {
		t.Errorf("mail %+v", m)
	}
	r := ParseRcptArgs("bob@example.com", []string{"NOTIFY=success,FAILURE", "ORCPT=rfc822;Bob+2Bx@example.com"})
	if !slices.Equal(r.Notify, []smtp.DSNNotify{"SUCCESS", "FAILURE"}) || r.ORcpt != "Bob+x@example.com" || r.ORcptType != smtp.DSNAddressTypeRFC822 {
		t.Errorf("rcpt %+v", r)
	}
	r = ParseRcptArgs("tanaka@example.jp", []string{`ORCPT=utf-8;\x{7530}\x{4E2D}+x@example.jp`})
	if r.ORcpt != "田中+x@example.jp" || r.ORcptType != smtp.DSNAddressTypeUTF8 {
		t.Errorf("utf-8 ORCPT %+v", r)
	}
	if got := decodeUTF8Addr(`a\x{D800}b\x{zz}`); got != `a\x{D800}b\x{zz}` {
		t.Errorf("malformed utf-8 escape: %q", got)
	}
	if got := decodeXtext("bad+zz+4"); got != "bad+zz+4" {
		t.Errorf("malformed xtext: %q", got)
	}
}

func TestUnixSocket(t *testing.T) {
	sock := t.TempDir() + "/s"
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &testSession{ts: ts}, nil }))
	srv.Domain = "test.invalid"
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	res := Send(context.Background(), Options{Address: "unix:" + sock, Timeout: 5 * time.Second},
		[]Transaction{tx("a@example.org", "Subject: u\n\nx\n", Rcpt{Addr: "u@example.com"})})
	if !res[0].HandedOver {
		t.Fatalf("%+v", res[0])
	}
	if got := ts.received(); len(got) != 1 || got[0].rcpts[0] != "u@example.com" {
		t.Errorf("server got %+v", got)
	}
}

func TestBeforeEndRunsBeforeTheDotAndCanAbandon(t *testing.T) {
	ts := startServer(t)
	var calls []int
	txs := []Transaction{
		tx("a@example.org", "Subject: 1\n\none\n", Rcpt{Addr: "one@example.com"}),
		tx("a@example.org", "Subject: 2\n\ntwo\n", Rcpt{Addr: "two@example.com"}),
	}
	txs[0].BeforeEnd = func() error {
		// The server has not got the message yet.
		calls = append(calls, len(ts.received()))
		return nil
	}
	txs[1].BeforeEnd = func() error { return errors.New("changed my mind") }
	res := Send(context.Background(), Options{Address: "inet:" + ts.addr, Timeout: 5 * time.Second}, txs)
	if !res[0].HandedOver || res[1].HandedOver || !strings.Contains(res[1].Err.Error(), "changed my mind") {
		t.Fatalf("results %+v", res)
	}
	if len(calls) != 1 || calls[0] != 0 {
		t.Errorf("BeforeEnd saw %v messages received", calls)
	}
	time.Sleep(100 * time.Millisecond)
	if got := ts.received(); len(got) != 1 {
		t.Errorf("server kept %d messages, want 1 (the abandoned one discarded)", len(got))
	}
}
