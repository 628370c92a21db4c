package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/bccguard/bccguard/internal/miltertest"
	"github.com/bccguard/bccguard/internal/syncbuf"
)

// runMainEnv makes the test binary run bccguard's main instead of the
// tests: the serve tests start it as a process of its own, to send it
// signals.
const runMainEnv = "BCCGUARD_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// silentReinjector is a reinjection service that reads a message to its
// final dot and never answers it, as a Postfix stuck in its queue would:
// bccguard waits for the reply for reinject.timeout.
type silentReinjector struct {
	dot     chan struct{} // closed when a final dot has been read
	release chan struct{} // closed at the end of the test
}

type silentSession struct{ r *silentReinjector }

func (s silentSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s silentSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s silentSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	select {
	case <-s.r.dot:
	default:
		close(s.r.dot)
	}
	<-s.r.release
	return errors.New("released")
}
func (s silentSession) Reset()        {}
func (s silentSession) Logout() error { return nil }

// TestSecondSignalExitsAtOnce: a second SIGTERM ends `bccguard serve` at
// once, with a non-zero status, although the shutdown the first one began
// is blocked: a split waits for the reply to a copy's final dot, which the
// reinjection service never sends (reinject.timeout 1m), so the stores
// cannot be closed for a minute. Before, the second signal only cancelled
// the shutdown's context, which that wait does not heed.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	rj := &silentReinjector{dot: make(chan struct{}), release: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return silentSession{rj}, nil }))
	srv.Domain = "reinject.test"
	go srv.Serve(ln)
	t.Cleanup(func() {
		close(rj.release)
		srv.Close()
	})

	dir := t.TempDir()
	sock := filepath.Join(dir, "milter.sock")
	cfg := writeConfig(t, fmt.Sprintf(`
internal_domains: [city.example.jp]
shutdown_timeout: 1s
reinject:
  address: inet:%s
  timeout: 1m
policy:
  delivery: split
split:
  state_dir: %s
`, ln.Addr(), dir))
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	log := &syncbuf.Buffer{}
	cmd := exec.Command(exe, "serve", "--allow-root", "--config", cfg, "--listen", "unix:"+sock)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	})
	// waitFor waits for what the daemon logs; the bound only catches a
	// daemon that never gets there.
	waitFor := func(what string) {
		t.Helper()
		for end := time.Now().Add(30 * time.Second); !strings.Contains(log.String(), what); time.Sleep(10 * time.Millisecond) {
			select {
			case err := <-exited:
				t.Fatalf("bccguard exited (%v) before %q:\n%s", err, what, log)
			default:
			}
			if time.Now().After(end) {
				t.Fatalf("no %q in the log:\n%s", what, log)
			}
		}
	}
	waitFor("bccguard started")

	s := miltertest.Dial(t, "unix", sock)
	session := make(chan struct{})
	// Before the session is closed (cleanups run last first): the session
	// ends with bccguard.
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-session
	})
	rcpts := []string{"a@ext.example", "b@other.example"}
	go func() {
		defer close(session)
		if err := s.Begin(miltertest.Message{Sender: "staff@city.example.jp", QueueID: "QS", Rcpts: rcpts,
			Header: [][2]string{{"To", strings.Join(rcpts, ", ")}, {"Message-ID", "<second-signal@city.example.jp>"}}}); err == nil {
			s.Finish() // ends when bccguard does
		}
	}()
	select {
	case <-rj.dot:
	case <-time.After(30 * time.Second):
		t.Fatalf("no copy reached the reinjection service:\n%s", log)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	waitFor("stopping: no new sessions")
	// Past shutdown_timeout the shutdown still waits for the split, whose
	// copy awaits its reply: bccguard has not exited. (Without this the
	// test could pass on a shutdown that was not blocked.)
	select {
	case err := <-exited:
		t.Fatalf("bccguard exited (%v) on the first signal: the shutdown was not blocked:\n%s", err, log)
	case <-time.After(2 * time.Second):
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err = <-exited:
	case <-time.After(20 * time.Second):
		// A hang detector, well short of the minute the split waits
		// for its reply; the wait ends as soon as bccguard exits.
		t.Fatalf("bccguard did not exit on the second signal:\n%s", log)
	}
	// The session ends with bccguard (before the cleanup closes it).
	<-session
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("exit %v, want status 1:\n%s", err, log)
	}
	if out := log.String(); !strings.Contains(out, "second signal: exiting now") || strings.Contains(out, "bccguard stopped") {
		t.Errorf("log, want the second signal's warning and no clean stop:\n%s", out)
	}
}
