package split

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	bolt "go.etcd.io/bbolt"

	"github.com/bccguard/bccguard/policy"
	"github.com/bccguard/bccguard/reinject"
)

func TestStoreRecordsSurviveReopenAndArePruned(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	d1, d2 := Digest{1}, Digest{2}
	now := time.Now()
	for _, r := range []struct {
		d    Digest
		rcpt string
		at   time.Time
	}{{d1, "a@x.example", now}, {d1, "b@x.example", now.Add(-3 * time.Hour)}, {d2, "a@x.example", now}} {
		if err := s.Record(r.d, r.rcpt, "QID", r.at); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s, err = OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.HandedOver(d1)
	if err != nil || len(got) != 2 || !got["a@x.example"] || !got["b@x.example"] {
		t.Fatalf("records of d1 after reopen: %v %v", got, err)
	}
	if n, err := s.Prune(now.Add(-2 * time.Hour)); n != 1 || err != nil {
		t.Fatalf("pruned %d (%v), want 1", n, err)
	}
	if got, _ := s.HandedOver(d1); len(got) != 1 || !got["a@x.example"] {
		t.Errorf("after prune: %v", got)
	}
	if got, _ := s.HandedOver(Digest{3}); len(got) != 0 {
		t.Errorf("unknown digest: %v", got)
	}
}

func TestSpoolGoesToAFileWhenLarge(t *testing.T) {
	dir := t.TempDir()
	small := NewSpool(dir)
	small.Write([]byte("hello\r\n"))
	if small.InFile() {
		t.Error("a small body went to a file")
	}
	big := NewSpool(dir)
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	var want []byte
	for big.Size() <= MemoryLimit {
		if _, err := big.Write(chunk); err != nil {
			t.Fatal(err)
		}
		want = append(want, chunk...)
	}
	if !big.InFile() {
		t.Fatal("a large body stayed in memory")
	}
	for range 2 {
		got, _ := io.ReadAll(big.Reader())
		if !bytes.Equal(got, want) {
			t.Fatalf("read back %d bytes, want %d", len(got), len(want))
		}
	}
	big.Close()
	small.Close()
}

func TestDigestIgnoresWhatChangesOnRetry(t *testing.T) {
	h1 := []policy.Field{{Name: "Received", Value: "by mx id AAA111"}, {Name: "Message-ID", Value: "<x@y>"}, {Name: "Subject", Value: "s"}}
	h2 := []policy.Field{{Name: "Received", Value: "by mx id BBB222"}, {Name: "Message-ID", Value: "<x@y>"}, {Name: "Subject", Value: "s"}}
	if MessageDigest("a@b", h1, []byte{1}) != MessageDigest("a@b", h2, []byte{1}) {
		t.Error("a retry has another digest")
	}
	// Messages without their own Message-ID get one from Postfix per
	// attempt: never taken for one another.
	gen1 := []policy.Field{h1[0], {Name: "Message-ID", Value: "<20261202.AAA111@mx>"}}
	gen2 := []policy.Field{h2[0], {Name: "Message-ID", Value: "<20261202.BBB222@mx>"}}
	if MessageDigest("a@b", gen1, []byte{1}) == MessageDigest("a@b", gen2, []byte{1}) {
		t.Error("two attempts with Message-IDs made up by Postfix have one digest")
	}
	for name, d := range map[string]Digest{
		"sender":  MessageDigest("c@b", h1, []byte{1}),
		"body":    MessageDigest("a@b", h1, []byte{2}),
		"subject": MessageDigest("a@b", append(h1[:2:2], policy.Field{Name: "Subject", Value: "t"}), []byte{1}),
	} {
		if d == MessageDigest("a@b", h1, []byte{1}) {
			t.Errorf("another %s, same digest", name)
		}
	}
}

// smtpServer records the recipients of what it accepts and refuses
// recipients starting with "refuse". rcptHook, when set, runs before the
// reply to each RCPT, dataHook after the message is read and before the
// reply to its final dot.
type smtpServer struct {
	addr     string
	mu       sync.Mutex
	mails    int // MAIL commands: transactions started
	rcpts    []string
	data     []string
	rcptHook func(to string)
	dataHook func()
}

type smtpSession struct {
	s    *smtpServer
	rcpt string
}

func (ss *smtpSession) Mail(string, *smtp.MailOptions) error {
	ss.s.mu.Lock()
	ss.s.mails++
	ss.s.mu.Unlock()
	return nil
}
func (ss *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if strings.HasPrefix(to, "refuse") {
		return &smtp.SMTPError{Code: 550, Message: "no"}
	}
	if ss.s.rcptHook != nil {
		ss.s.rcptHook(to)
	}
	ss.rcpt = to
	return nil
}
func (ss *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err // cut before the final dot: not accepted
	}
	if ss.s.dataHook != nil {
		ss.s.dataHook()
	}
	ss.s.mu.Lock()
	ss.s.rcpts = append(ss.s.rcpts, ss.rcpt)
	ss.s.data = append(ss.s.data, string(b))
	ss.s.mu.Unlock()
	return nil
}
func (ss *smtpSession) Reset()        {}
func (ss *smtpSession) Logout() error { return nil }

func startSMTP(t *testing.T) *smtpServer {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpServer{addr: l.Addr().String()}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &smtpSession{s: s}, nil }))
	srv.Domain = "test.invalid"
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

func TestRunHandsOverRecordsAndSkipsOnRetry(t *testing.T) {
	srv := startSMTP(t)
	store, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	header := []policy.Field{{Name: "From", Value: "s@city.example"}, {Name: "To", Value: "a@x.example, refuse@x.example, b@x.example"}, {Name: "Subject", Value: "hi"}}
	var copies []policy.Copy
	for _, r := range []string{"a@x.example", "refuse@x.example", "b@x.example"} {
		copies = append(copies, policy.Copy{Rcpts: []string{r}, To: r, Edits: []policy.Edit{{Op: policy.EditChange, Name: "To", Index: 1, Value: r}}})
	}
	body := NewSpool(t.TempDir())
	body.Write([]byte("line\r\n.dot\r\n"))
	job := &Job{Digest: Digest{9}, Mail: reinject.Mail{From: "s@city.example"}, Header: header, Copies: copies, Body: body,
		Rcpt: func(a string) reinject.Rcpt { return reinject.Rcpt{Addr: a} }}
	sp := &Splitter{Store: store, Reinject: reinject.Options{Address: "inet:" + srv.addr, Timeout: 5 * time.Second}}
	progress := 0
	out := sp.Run(context.Background(), job, func() error { progress++; return nil })
	if out.Sent != 2 || out.Failed != 1 || out.Before != 0 || out.Err == nil || progress != 2 ||
		!out.HandedOver[0] || out.HandedOver[1] || !out.HandedOver[2] {
		t.Fatalf("first run %+v (progress %d)", out, progress)
	}
	if srv.data[0] != "From: s@city.example\r\nTo: a@x.example\r\nSubject: hi\r\n\r\nline\r\n.dot\r\n" {
		t.Errorf("copy %q", srv.data[0])
	}
	// The retry: only the refused one is tried again.
	out = sp.Run(context.Background(), job, nil)
	if out.Sent != 0 || out.Before != 2 || out.Failed != 1 {
		t.Fatalf("retry %+v", out)
	}
	if len(srv.rcpts) != 2 {
		t.Errorf("server got %q", srv.rcpts)
	}
	// Service down: nothing handed over.
	sp.Reinject.Address = "inet:127.0.0.1:1"
	job.Digest = Digest{10}
	if out := sp.Run(context.Background(), job, nil); out.Sent != 0 || out.Failed != 3 || out.Err == nil {
		t.Errorf("service down: %+v", out)
	}
}

// TestRunStopsAtAFailedRecord: when a record cannot be written (disk
// full, read-only), the next copy is cut before its final dot and no
// further copy is tried: a copy without its record would be sent again by
// a retry. Their recipients stay on the original.
func TestRunStopsAtAFailedRecord(t *testing.T) {
	srv := startSMTP(t)
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bolt.Open(filepath.Join(dir, StoreFile), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	store := &Store{db: db}
	defer store.Close()
	var copies []policy.Copy
	for _, r := range []string{"a@x.example", "b@x.example", "c@x.example", "d@x.example"} {
		copies = append(copies, policy.Copy{Rcpts: []string{r}, To: r})
	}
	body := NewSpool(t.TempDir())
	body.Write([]byte("body\r\n"))
	job := &Job{Digest: Digest{12}, Mail: reinject.Mail{From: "s@city.example"}, Header: []policy.Field{{Name: "To", Value: "a@x.example"}},
		Copies: copies, Body: body, Rcpt: func(a string) reinject.Rcpt { return reinject.Rcpt{Addr: a} }}
	sp := &Splitter{Store: store, Reinject: reinject.Options{Address: "inet:" + srv.addr, Timeout: 5 * time.Second}}
	out := sp.Run(context.Background(), job, nil)
	if out.RecordErr == nil || out.Sent != 1 || out.Failed != 3 || !out.HandedOver[0] || out.HandedOver[1] {
		t.Fatalf("run with failing records %+v", out)
	}
	time.Sleep(100 * time.Millisecond) // the server sees the cut copy
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.rcpts) != 1 {
		t.Errorf("copies accepted: %q, want only the first", srv.rcpts)
	}
}

// TestRunStopsBetweenCopies: once progress fails (the milter connection is
// gone, the daemon is stopping), no further copy is handed over, and each
// one handed over before is recorded: the retry sends only the rest.
func TestRunStopsBetweenCopies(t *testing.T) {
	srv := startSMTP(t)
	store, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var copies []policy.Copy
	for _, r := range []string{"a@x.example", "b@x.example", "c@x.example"} {
		copies = append(copies, policy.Copy{Rcpts: []string{r}, To: r})
	}
	body := NewSpool(t.TempDir())
	body.Write([]byte("body\r\n"))
	job := &Job{Digest: Digest{11}, Mail: reinject.Mail{From: "s@city.example"}, Header: []policy.Field{{Name: "To", Value: "a@x.example"}},
		Copies: copies, Body: body, Rcpt: func(a string) reinject.Rcpt { return reinject.Rcpt{Addr: a} }}
	sp := &Splitter{Store: store, Reinject: reinject.Options{Address: "inet:" + srv.addr, Timeout: 5 * time.Second}}
	stop := errors.New("connection gone")
	out := sp.Run(context.Background(), job, func() error { return stop })
	if out.Sent != 1 || out.Failed != 2 || !errors.Is(out.Err, stop) || !out.HandedOver[0] || out.HandedOver[1] {
		t.Fatalf("stopped run %+v", out)
	}
	if got, _ := store.HandedOver(Digest{11}); len(got) != 1 || !got["a@x.example"] {
		t.Errorf("records after the stop: %v", got)
	}
	if len(srv.rcpts) != 1 {
		t.Errorf("server got %q", srv.rcpts)
	}
}

// BenchmarkRecord measures the window left open after a crash: from
// Postfix's 250 to a copy until its record is on disk (one bbolt commit
// with fsync). BCCGUARD_BENCH_DIR puts the records on the disk to measure
// (t.TempDir() may be a tmpfs).
func BenchmarkRecord(b *testing.B) {
	dir := os.Getenv("BCCGUARD_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	} else {
		dir, _ = os.MkdirTemp(dir, "bench-")
		defer os.RemoveAll(dir)
	}
	s, err := OpenStore(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var d Digest
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		d[0], d[1], d[2] = byte(i), byte(i>>8), byte(i>>16)
		if err := s.Record(d, "someone@ext.example", "4ABCDEF", time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}

func TestIdentifiable(t *testing.T) {
	for _, c := range []struct {
		h    []policy.Field
		want bool
	}{
		{[]policy.Field{{Name: "Subject", Value: "s"}}, false},
		{[]policy.Field{{Name: "message-id", Value: " "}}, false},
		{[]policy.Field{{Name: "Message-ID", Value: "<20261202061500.4XyZ1r2ABC@mx.city.example.jp>"}}, false},
		{[]policy.Field{{Name: "Message-Id", Value: "<abc.def@pc.city.example.jp>"}}, true},
	} {
		if got := Identifiable(c.h, "4XyZ1r2ABC"); got != c.want {
			t.Errorf("%v: %v", c.h, got)
		}
	}
	h := []policy.Field{{Name: "X-Rspamd-Queue-Id", Value: "4XyZ1r2ABC"}, {Name: "Message-ID", Value: "<a@b>"}}
	h2 := []policy.Field{{Name: "X-Rspamd-Queue-Id", Value: "5QQQ"}, {Name: "Message-ID", Value: "<a@b>"}}
	if MessageDigest("s", StableFields(h, "4XyZ1r2ABC"), nil) != MessageDigest("s", StableFields(h2, "5QQQ"), nil) {
		t.Error("a field naming the queue id changes the digest")
	}
}

// TestRunFindsRecordsWhateverTheSpelling: a retry that spells a recipient
// another way (case, the U-label or A-label form of an IDN domain) finds
// the record: records use the policy's address key.
func TestRunFindsRecordsWhateverTheSpelling(t *testing.T) {
	srv := startSMTP(t)
	store, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	body := NewSpool(t.TempDir())
	body.Write([]byte("body\r\n"))
	job := func(rcpt string) *Job {
		return &Job{Digest: Digest{13}, Mail: reinject.Mail{From: "s@city.example"}, Header: []policy.Field{{Name: "To", Value: rcpt}},
			Copies: []policy.Copy{{Rcpts: []string{rcpt}, To: rcpt}}, Body: body, Rcpt: func(a string) reinject.Rcpt { return reinject.Rcpt{Addr: a} }}
	}
	sp := &Splitter{Store: store, Reinject: reinject.Options{Address: "inet:" + srv.addr, Timeout: 5 * time.Second}}
	if out := sp.Run(context.Background(), job("Tanaka@xn--wgv71a.example"), nil); out.Sent != 1 {
		t.Fatalf("first attempt %+v", out)
	}
	if out := sp.Run(context.Background(), job("tanaka@日本.example"), nil); out.Sent != 0 || out.Before != 1 {
		t.Errorf("retry in the Unicode form: %+v (a second copy)", out)
	}
}

// timedJob is a job of one copy per recipient, on srv and a fresh store.
func timedJob(t *testing.T, srv *smtpServer, timeout time.Duration, rcpts ...string) (*Splitter, *Job) {
	t.Helper()
	store, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	var copies []policy.Copy
	for _, r := range rcpts {
		copies = append(copies, policy.Copy{Rcpts: []string{r}, To: r})
	}
	body := NewSpool(t.TempDir())
	body.Write([]byte("body\r\n"))
	job := &Job{Digest: Digest{13}, Mail: reinject.Mail{From: "s@city.example"}, Header: []policy.Field{{Name: "To", Value: rcpts[0]}},
		Copies: copies, Body: body, Rcpt: func(a string) reinject.Rcpt { return reinject.Rcpt{Addr: a} }}
	return &Splitter{Store: store, Reinject: reinject.Options{Address: "inet:" + srv.addr, Timeout: timeout}}, job
}

// TestRunWaitsForTheReplyToADotPastItsDeadline: Postfix answers a copy's
// final dot after the split's deadline (slow before the dot, then slow to
// answer it), within reinject.timeout. Postfix has queued the copy, so it
// counts as handed over and is recorded: giving up at the deadline left
// its recipient on the original too (two messages). No copy is started
// after it.
func TestRunWaitsForTheReplyToADotPastItsDeadline(t *testing.T) {
	srv := startSMTP(t)
	const timeout = 2 * time.Second
	deadline := time.Now().Add(timeout + 500*time.Millisecond)
	// Its RCPT is answered 1 s before the deadline, its dot 200 ms after
	// it.
	srv.rcptHook = func(string) { time.Sleep(time.Until(deadline.Add(-time.Second))) }
	srv.dataHook = func() { time.Sleep(time.Until(deadline.Add(200 * time.Millisecond))) }
	sp, job := timedJob(t, srv, timeout, "a@x.example", "b@x.example")
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	out := sp.Run(ctx, job, nil)
	if !out.HandedOver[0] || out.Sent != 1 {
		t.Errorf("the copy Postfix queued after the deadline: %+v, want handed over", out)
	}
	if out.HandedOver[1] || out.Failed != 1 {
		t.Errorf("the copy after the deadline: %+v, want not handed over", out)
	}
	if got, _ := sp.Store.HandedOver(job.Digest); len(got) != 1 || !got["a@x.example"] {
		t.Errorf("records %v, want a@x.example's", got)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.mails != 1 || len(srv.rcpts) != 1 || srv.rcpts[0] != "a@x.example" {
		t.Errorf("server: %d transactions started, accepted %q; want only a@x.example's", srv.mails, srv.rcpts)
	}
}

// TestRunStartsCopiesUntilTheDeadline: copies are started until the
// split's deadline, however much less than reinject.timeout is left: the
// deadline bounds what comes before a copy's final dot (a copy it cuts is
// discarded by Postfix), and the reply to a dot is waited for up to
// reinject.timeout past it either way. Keeping reinject.timeout in hand
// before each copy only left recipients on the original. Here the split
// has 2 s against a 5 s timeout, and its first copy takes 1 s.
func TestRunStartsCopiesUntilTheDeadline(t *testing.T) {
	srv := startSMTP(t)
	srv.rcptHook = func(to string) {
		if to == "a@x.example" {
			time.Sleep(time.Second)
		}
	}
	sp, job := timedJob(t, srv, 5*time.Second, "a@x.example", "b@x.example")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out := sp.Run(ctx, job, nil)
	if out.Sent != 2 || out.Failed != 0 || out.Err != nil {
		t.Errorf("outcome %+v, want both copies handed over", out)
	}
	if got, _ := sp.Store.HandedOver(job.Digest); len(got) != 2 {
		t.Errorf("records %v, want both", got)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.mails != 2 || len(srv.rcpts) != 2 {
		t.Errorf("server: %d transactions started, accepted %q; want both", srv.mails, srv.rcpts)
	}
}

// TestBodySizeCountsCRLF: a body read from a file counts as Postfix hands
// it to the milter, every line ended with CRLF (the last one too).
func TestBodySizeCountsCRLF(t *testing.T) {
	for body, want := range map[string]int64{"": 0, "a\r\nbc\r\n": 7, "a\nbc\n": 7, "a\nbc": 7, "\n\n": 4} {
		if got := BodySize([]byte(body)); got != want {
			t.Errorf("BodySize(%q) = %d, want %d", body, got, want)
		}
	}
}
