package milter

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/bccguard/bccguard/config"
	"github.com/bccguard/bccguard/internal/miltertest"
	"github.com/bccguard/bccguard/internal/postfixtest"
	"github.com/bccguard/bccguard/policy"
	"github.com/bccguard/bccguard/split"
)

// copies returns what the stand-in for Postfix's reinjection service
// received, by recipient.
func copies(sink *postfixtest.Sink) map[string]string {
	got := map[string]string{}
	for _, d := range sink.Deliveries() {
		for _, r := range d.Rcpts {
			got[r] = string(d.Data)
		}
	}
	return got
}

func splitSnapshot(t testing.TB, reinjectAddr string) *config.Config {
	c := snapshot(cityPolicy(t, func(s *policy.Settings) { s.Delivery = policy.DeliverySplit }))
	c.Reinject = config.Reinject{Address: "inet:" + reinjectAddr, Timeout: 5 * time.Second}
	c.Split = config.Split{MaxRecipients: 10, MaxMessageBytes: 1 << 20, StateDir: t.TempDir(), Retention: time.Hour}
	return c
}

func modStrings(mods []gomilter.ModifyAction) []string {
	out := make([]string, len(mods))
	for i, m := range mods {
		out[i] = m.String()
	}
	return out
}

// TestSplitNegotiationFollowsTheSnapshotAtConnect: body and recipient
// events and recipient removal are asked for only on connections opened
// while some rule uses split; a connection opened before keeps its lean
// protocol and hides instead.
func TestSplitNegotiationFollowsTheSnapshotAtConnect(t *testing.T) {
	sink := postfixtest.StartSink(t)
	addr, p, srv := startServer(t, cityPolicy(t, nil))
	before := miltertest.Dial(t, "tcp", addr)
	p.Store(splitSnapshot(t, sink.Addr()))
	after := miltertest.Dial(t, "tcp", addr)
	if !before.ProtocolOption(gomilter.OptNoBody) || !before.ProtocolOption(gomilter.OptNoRcptTo) || before.ActionOption(gomilter.OptRemoveRcpt) {
		t.Error("a hide-only connection negotiated split's events")
	}
	if after.ProtocolOption(gomilter.OptNoBody) || after.ProtocolOption(gomilter.OptNoRcptTo) || !after.ActionOption(gomilter.OptRemoveRcpt) {
		t.Error("a split connection lacks body, recipients or recipient removal")
	}
	msg := miltertest.Message{Sender: "staff@city.example.jp", QueueID: "Q1", Rcpts: []string{"a@ext.example", "b@ext.example", "bcc@ext.example"},
		Header: [][2]string{{"From", "staff@city.example.jp"}, {"To", "a@ext.example, B <b@ext.example>"}, {"Subject", "s"}, {"Message-ID", "<m1@city.example.jp>"}}}

	mods, act := before.Send(t, msg)
	if act.Type != gomilter.ActionAccept || strings.Contains(strings.Join(modStrings(mods), "\n"), "DelRcpt") || len(copies(sink)) != 0 {
		t.Errorf("old connection: %v %q, copies %v", act, modStrings(mods), copies(sink))
	}

	mods, act = after.Send(t, msg)
	got := strings.Join(modStrings(mods), "\n")
	if act.Type != gomilter.ActionAccept {
		t.Fatalf("action %v", act)
	}
	for _, want := range []string{`DelRcpt "<a@ext.example>"`, `DelRcpt "<b@ext.example>"`, `"To" "undisclosed-recipients:;"`, `"X-BCCGuard" "split; to=2 external=2 moved=2 copies=2"`} {
		if !strings.Contains(got, want) {
			t.Errorf("modifications lack %s:\n%s", want, got)
		}
	}
	if strings.Contains(got, "bcc@") {
		t.Errorf("the Bcc recipient was removed:\n%s", got)
	}
	rec := httptest.NewRecorder()
	srv.metrics.Handler(func() error { return nil }).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{"bccguard_split_copies_total 2\n", `bccguard_split_fallbacks_total{reason="not_negotiated"} 0` + "\n", `bccguard_split_fallbacks_total{reason="reinject"} 0` + "\n"} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	handed := copies(sink)
	if len(handed) != 2 || !strings.Contains(handed["b@ext.example"], "\r\nTo: \"B\" <b@ext.example>\r\n") || !strings.HasSuffix(handed["a@ext.example"], "\r\n\r\nbody\r\n") {
		t.Errorf("copies %q", handed)
	}
}

func TestSplitDiscardsAnEmptyOriginal(t *testing.T) {
	sink := postfixtest.StartSink(t)
	addr, p, _ := startServer(t, cityPolicy(t, nil))
	p.Store(splitSnapshot(t, sink.Addr()))
	s := miltertest.Dial(t, "tcp", addr)
	mods, act := s.Send(t, miltertest.Message{Sender: "staff@city.example.jp", QueueID: "Q2", Rcpts: []string{"a@ext.example", "b@ext.example"},
		Header: [][2]string{{"To", "a@ext.example, b@ext.example"}, {"Message-ID", "<m2@city.example.jp>"}}})
	if act.Type != gomilter.ActionDiscard {
		t.Fatalf("action %v, mods %q", act, modStrings(mods))
	}
	if got := copies(sink); len(got) != 2 {
		t.Errorf("copies %v", got)
	}
}

// TestSplitPrunesOldRecords: the first split on a state directory prunes
// records older than split.retention; newer ones stay.
func TestSplitPrunesOldRecords(t *testing.T) {
	sink := postfixtest.StartSink(t)
	snap := splitSnapshot(t, sink.Addr())
	st, err := split.OpenStore(snap.Split.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	st.Record(split.Digest{1}, "old@ext.example", "Q", time.Now().Add(-2*time.Hour))
	st.Record(split.Digest{2}, "new@ext.example", "Q", time.Now())
	st.Close()

	addr, p, srv := startServer(t, cityPolicy(t, nil))
	p.Store(snap)
	s := miltertest.Dial(t, "tcp", addr)
	s.Send(t, miltertest.Message{Sender: "staff@city.example.jp", QueueID: "Q3", Rcpts: []string{"a@ext.example", "b@ext.example"},
		Header: [][2]string{{"To", "a@ext.example, b@ext.example"}, {"Message-ID", "<m3@city.example.jp>"}}})
	srv.splitStores.close() // waits for the prune
	st, err = split.OpenStore(snap.Split.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	old, _ := st.HandedOver(split.Digest{1})
	recent, _ := st.HandedOver(split.Digest{2})
	if len(old) != 0 || len(recent) != 1 || st.Count() != 3 {
		t.Errorf("after the prune: old %v, recent %v, %d records (want the recent one and this message's two)", old, recent, st.Count())
	}
}

// TestSplitOnDamagedRecordsHides: a split.db bbolt cannot read is reported
// by OpenSplitStore (the daemon calls it at start) and every message to
// split is hidden instead: no crash, no copy, nothing lost.
func TestSplitOnDamagedRecordsHides(t *testing.T) {
	sink := postfixtest.StartSink(t)
	snap := splitSnapshot(t, sink.Addr())
	bad := make([]byte, 4*4096)
	for i := range bad {
		bad[i] = 0xa5
	}
	if err := os.WriteFile(filepath.Join(snap.Split.StateDir, split.StoreFile), bad, 0o600); err != nil {
		t.Fatal(err)
	}
	addr, p, srv := startServer(t, cityPolicy(t, nil))
	p.Store(snap)
	if err := srv.OpenSplitStore(snap); err == nil {
		t.Fatal("a damaged split.db opened without an error")
	}
	s := miltertest.Dial(t, "tcp", addr)
	for _, q := range []string{"Q4", "Q5"} {
		mods, act := s.Send(t, miltertest.Message{Sender: "staff@city.example.jp", QueueID: q, Rcpts: []string{"a@ext.example", "b@ext.example"},
			Header: [][2]string{{"To", "a@ext.example, b@ext.example"}, {"Message-ID", "<m1@city.example.jp>"}}})
		got := strings.Join(modStrings(mods), "\n")
		if act.Type != gomilter.ActionAccept || strings.Contains(got, "DelRcpt") || !strings.Contains(got, `"To" "undisclosed-recipients:;"`) {
			t.Errorf("%s: action %v, mods %s", q, act, got)
		}
	}
	if got := copies(sink); len(got) != 0 {
		t.Errorf("copies handed over without records: %v", got)
	}
}

// TestSplitNeedsTheSendersMessageID: without a Message-ID, or with one
// Postfix made up from this attempt's queue id, a retry could not be told
// from a new message: such mail is hidden, not split.
func TestSplitNeedsTheSendersMessageID(t *testing.T) {
	sink := postfixtest.StartSink(t)
	addr, p, _ := startServer(t, cityPolicy(t, nil))
	p.Store(splitSnapshot(t, sink.Addr()))
	s := miltertest.Dial(t, "tcp", addr)
	for name, h := range map[string][][2]string{
		"none":      {{"To", "a@ext.example, b@ext.example"}},
		"postfix's": {{"To", "a@ext.example, b@ext.example"}, {"Message-ID", "<20261202061500.4XyZ1r2ABC@mx.city.example.jp>"}},
	} {
		mods, act := s.Send(t, miltertest.Message{Sender: "staff@city.example.jp", QueueID: "4XyZ1r2ABC", Rcpts: []string{"a@ext.example", "b@ext.example"}, Header: h})
		got := strings.Join(modStrings(mods), "\n")
		if act.Type != gomilter.ActionAccept || strings.Contains(got, "DelRcpt") || !strings.Contains(got, `"To" "undisclosed-recipients:;"`) {
			t.Errorf("%s Message-ID: action %v, mods %s", name, act, got)
		}
	}
	if got := copies(sink); len(got) != 0 {
		t.Errorf("copies of a message without its own Message-ID: %v", got)
	}
}

// TestSplitBudgetUnderAMinute: with the default split.max_recipients the
// last copy starts before a mail client gives up waiting for its DATA answer
// (Outlook: 60 s); a larger limit gets more time, up to 4 minutes with a
// last slow reply (reinject.timeout past the budget).
func TestSplitBudgetUnderAMinute(t *testing.T) {
	const timeout = 30 * time.Second // reinject.timeout's default
	if b := splitBudget(100, timeout); b != 45*time.Second {
		t.Errorf("budget for 100 copies %v, want 45s", b)
	}
	if b := splitBudget(50, timeout); b >= splitBudget(100, timeout) {
		t.Errorf("budget for 50 copies %v: not less than for 100", b)
	}
	if b := splitBudget(10000, timeout); b+timeout != 4*time.Minute {
		t.Errorf("budget for 10000 copies %v: with a last reply, not the 4 minute cap", b)
	}
	for _, to := range []time.Duration{time.Second, timeout, time.Minute} {
		for _, n := range []int{1, 5, 100, 10000} {
			if b := splitBudget(n, to); b < 20*time.Second || b+to > 4*time.Minute {
				t.Errorf("budget for %d copies with reinject.timeout %v: %v", n, to, b)
			}
		}
	}
}

// TestSplitOnLockedRecordsHides: records another process holds open
// (bbolt's file lock) fail to open after bbolt's timeout once; the open is
// not tried again for each message (each would wait out the timeout), and
// every message to split is hidden. That it is not tried again shows once
// the holder lets go: the messages after that are still hidden, where a
// second open would have succeeded and split them.
func TestSplitOnLockedRecordsHides(t *testing.T) {
	sink := postfixtest.StartSink(t)
	snap := splitSnapshot(t, sink.Addr())
	holder, err := split.OpenStore(snap.Split.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close() // a second Close is harmless
	addr, p, srv := startServer(t, cityPolicy(t, nil))
	p.Store(snap)
	if err := srv.OpenSplitStore(snap); err == nil {
		t.Fatal("records locked by another holder opened without an error")
	}
	s := miltertest.Dial(t, "tcp", addr)
	for i, q := range []string{"Q6", "Q7", "Q8"} {
		if i == 1 {
			if err := holder.Close(); err != nil {
				t.Fatal(err)
			}
		}
		// The Message-ID must not contain the queue id, or the message
		// would fall back for want of an identifiable Message-ID before
		// the records are ever asked for.
		mods, act := s.Send(t, miltertest.Message{Sender: "staff@city.example.jp", QueueID: q, Rcpts: []string{"a@ext.example", "b@ext.example"},
			Header: [][2]string{{"To", "a@ext.example, b@ext.example"}, {"Message-ID", fmt.Sprintf("<locked%d@city.example.jp>", i)}}})
		if got := strings.Join(modStrings(mods), "\n"); act.Type != gomilter.ActionAccept || strings.Contains(got, "DelRcpt") ||
			!strings.Contains(got, `"To" "undisclosed-recipients:;"`) {
			t.Errorf("%s: action %v, mods %s (want hidden, not split: the open tried again?)", q, act, got)
		}
	}
	if got := scrape(t, srv); !strings.Contains(got, `bccguard_split_fallbacks_total{reason="state"} 3`+"\n") {
		t.Errorf("want 3 fallbacks for the records:\n%s", got)
	}
	if got := copies(sink); len(got) != 0 {
		t.Errorf("copies without records: %v", got)
	}
}

// TestSplitDuringShutdownHides: a message that reaches end-of-message
// after Shutdown began (its session still served until the deadline) is
// hidden, not split: no copy goes out that a cut session could leave
// without its original.
func TestSplitDuringShutdownHides(t *testing.T) {
	sink := postfixtest.StartSink(t)
	addr, p, srv := startServer(t, cityPolicy(t, nil))
	p.Store(splitSnapshot(t, sink.Addr()))
	s := miltertest.Dial(t, "tcp", addr)
	stopped := make(chan struct{})
	go func() {
		// Long enough for the session below on a loaded machine; it
		// ends as soon as the session does.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		srv.Shutdown(ctx)
		close(stopped)
	}()
	for !srv.isStopping() {
		time.Sleep(time.Millisecond)
	}
	mods, act := s.Send(t, miltertest.Message{Sender: "staff@city.example.jp", QueueID: "Q9", Rcpts: []string{"a@ext.example", "b@ext.example"},
		Header: [][2]string{{"To", "a@ext.example, b@ext.example"}, {"Message-ID", "<q9@city.example.jp>"}}})
	got := strings.Join(modStrings(mods), "\n")
	if act.Type != gomilter.ActionAccept || strings.Contains(got, "DelRcpt") || !strings.Contains(got, `"To" "undisclosed-recipients:;"`) {
		t.Errorf("action %v, mods %s", act, got)
	}
	if got := copies(sink); len(got) != 0 {
		t.Errorf("copies during shutdown: %v", got)
	}
	s.Close()
	<-stopped
}

// An MTA that offers 1 MiB body chunks gets 64 KiB ones: a 1 MiB chunk
// is a packet over MaxPacketSize, which would end every split session.
func TestSplitNegotiatesBodyChunksWithinThePacketLimit(t *testing.T) {
	sink := postfixtest.StartSink(t)
	addr, p, _ := startServer(t, cityPolicy(t, nil))
	p.Store(splitSnapshot(t, sink.Addr()))
	const mds256K, mds1M = 1 << 28, 1 << 29
	neg := binary.BigEndian.AppendUint32(nil, 6)
	neg = binary.BigEndian.AppendUint32(neg, 0x1ff)
	neg = binary.BigEndian.AppendUint32(neg, 0x1fffff|mds256K|mds1M)
	c := rawDial(t, addr, false)
	c.Write(append(append(binary.BigEndian.AppendUint32(nil, uint32(len(neg)+1)), 'O'), neg...))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	reply := make([]byte, 5+12)
	if _, err := io.ReadFull(c, reply); err != nil || reply[4] != 'O' {
		t.Fatalf("negotiation reply %q: %v", reply, err)
	}
	protocol := binary.BigEndian.Uint32(reply[13:17])
	if gomilter.OptProtocol(protocol)&gomilter.OptNoBody != 0 {
		t.Fatal("split not in effect: body not negotiated")
	}
	if protocol&(mds256K|mds1M) != 0 {
		t.Fatalf("negotiated body chunks over 64 KiB (protocol %#x)", protocol)
	}
}

// TestSplitSizeAsFeasibleCountsIt: the daemon counts a message against
// split.max_message_bytes as split.FieldSize and split.BodySize do, which
// is what `bccguard check` counts: at the limit it splits, one byte over
// it hides (reason max_message_bytes).
func TestSplitSizeAsFeasibleCountsIt(t *testing.T) {
	sink := postfixtest.StartSink(t)
	addr, p, srv := startServer(t, cityPolicy(t, nil))
	header := [][2]string{{"From", "staff@city.example.jp"}, {"To", "a@ext.example,\r\n b@ext.example"}, {"Message-ID", "<size@city.example.jp>"}}
	size := split.BodySize([]byte("body\n")) // miltertest's body
	for _, f := range header {
		size += split.FieldSize(f[0], f[1])
	}
	for i, limit := range []int64{size - 1, size} {
		snap := splitSnapshot(t, sink.Addr())
		snap.Split.MaxMessageBytes = limit
		p.Store(snap)
		s := miltertest.Dial(t, "tcp", addr)
		mods, act := s.Send(t, miltertest.Message{Sender: "staff@city.example.jp", QueueID: fmt.Sprintf("QS%d", i),
			Rcpts: []string{"a@ext.example", "b@ext.example", "bcc@ext.example"}, Header: header})
		got := strings.Join(modStrings(mods), "\n")
		if split := strings.Contains(got, "DelRcpt"); act.Type != gomilter.ActionAccept || split != (limit == size) {
			t.Errorf("max_message_bytes %d, message %d bytes: %v\n%s", limit, size, act, got)
		}
	}
	if got := scrape(t, srv); !strings.Contains(got, `bccguard_split_fallbacks_total{reason="max_message_bytes"} 1`+"\n") {
		t.Errorf("metrics:\n%s", got)
	}
	if got := copies(sink); len(got) != 2 {
		t.Errorf("copies %v, want the two of the message at the limit", got)
	}
}
