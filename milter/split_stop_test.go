package milter

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/emersion/go-smtp"

	"github.com/bccguard/bccguard/internal/miltertest"
	"github.com/bccguard/bccguard/split"
)

// slowReinjector is a reinjection service that takes its time over each
// copy, as a loaded Postfix does.
type slowReinjector struct {
	mu    sync.Mutex
	rcpts []string
}

type slowSession struct {
	r    *slowReinjector
	rcpt string
}

func (s *slowSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *slowSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.rcpt = to
	return nil
}
func (s *slowSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	time.Sleep(100 * time.Millisecond)
	s.r.mu.Lock()
	s.r.rcpts = append(s.r.rcpts, s.rcpt)
	s.r.mu.Unlock()
	return nil
}
func (s *slowSession) Reset()        {}
func (s *slowSession) Logout() error { return nil }

// TestShutdownMidSplitLeavesNoCopyWithoutRecord: the daemon is stopped
// (Shutdown with a short deadline, then Close, as daemon.Shutdown does)
// while a long split is handing over copies. The split stops after the
// copy in flight; every copy Postfix accepted has its record once the
// stores are closed, so the retry sends none twice.
func TestShutdownMidSplitLeavesNoCopyWithoutRecord(t *testing.T) {
	rj := &slowReinjector{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	smtpSrv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &slowSession{r: rj}, nil }))
	smtpSrv.Domain = "reinject.test"
	go smtpSrv.Serve(ln)
	defer smtpSrv.Close()

	snap := splitSnapshot(t, ln.Addr().String())
	snap.Split.MaxRecipients = 50
	var rcpts []string
	for i := range 30 {
		rcpts = append(rcpts, fmt.Sprintf("r%d@ext.example", i))
	}
	addr, p, srv := startServer(t, cityPolicy(t, nil))
	p.Store(snap)
	s := miltertest.Dial(t, "tcp", addr)
	finished := make(chan error, 1)
	go func() {
		err := s.Begin(miltertest.Message{Sender: "staff@city.example.jp", QueueID: "QS", Rcpts: rcpts,
			Header: [][2]string{{"To", strings.Join(rcpts, ", ")}, {"Message-ID", "<qs@city.example.jp>"}}})
		var act *gomilter.Action
		if err == nil {
			_, act, err = s.Finish()
		}
		if err == nil && act.Type != gomilter.ActionAccept {
			err = fmt.Errorf("action %v", act)
		}
		finished <- err
	}()
	// Stopped once a copy is in: a split cut before its first copy
	// would prove nothing, and a fixed sleep may end before it on a
	// loaded machine.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		rj.mu.Lock()
		n := len(rj.rcpts)
		rj.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no copy handed over")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		srv.Close()
	}
	if err := <-finished; err != nil {
		t.Errorf("the session did not end well: %v", err)
	}
	rj.mu.Lock()
	handed := len(rj.rcpts)
	rj.mu.Unlock()
	st, err := split.OpenStore(snap.Split.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if handed == 0 || handed == len(rcpts) || st.Count() != handed {
		t.Errorf("%d of %d copies handed over, %d records: want a split stopped midway with a record for each copy", handed, len(rcpts), st.Count())
	}
}
