package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bccguard/bccguard/internal/syncbuf"
)

// bccguardBin is the daemon binary built once for the package by TestMain:
// the tests run the real command, flags, config loading and signals.
var bccguardBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bccguard-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bccguardBin = filepath.Join(dir, "bccguard")
	// Built with the race detector: the reload storm and the fault tests
	// then also check the daemon itself for data races (a race makes it
	// print "DATA RACE" and exit with status 66).
	build := exec.Command("go", "build", "-race", "-o", bccguardBin, "../cmd/bccguard")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build bccguard:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is a running `bccguard serve`.
type daemon struct {
	cmd    *exec.Cmd
	addr   string
	log    *syncbuf.Buffer
	exited chan error
}

// writeConfig writes a config file for the daemon into a temp dir.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "bccguard.yaml")
	if err := os.WriteFile(f, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// startDaemon runs `bccguard serve --config cfg --listen inet:addr` and
// waits until it accepts connections.
func startDaemon(t *testing.T, cfg, addr string) *daemon {
	t.Helper()
	d, err := launchDaemon(t, cfg, addr)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// launchDaemon is startDaemon for a goroutine other than the test's own
// (a restart in the middle of a burst): it returns the failure instead of
// calling t.Fatal, which would end only that goroutine and leave the test
// waiting for a daemon that never comes.
func launchDaemon(t *testing.T, cfg, addr string) (*daemon, error) {
	d := &daemon{addr: addr, log: &syncbuf.Buffer{}, exited: make(chan error, 1)}
	d.cmd = exec.Command(bccguardBin, "serve", "--allow-root", "--config", cfg, "--listen", "inet:"+addr)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Kill()
			<-d.exited
		}
		d.checkLog(t)
	})
	// Generous: a race-built binary on a loaded machine starts slowly, and
	// the wait ends as soon as it listens. Its own "started" line is what
	// proves that it bound addr: a connection alone could reach another
	// process that took the port first (this daemon then exits with
	// "address already in use"), and the test would go on against a
	// milter it does not control (one did: a SIGSTOP that stopped nothing).
	deadline := time.Now().Add(60 * time.Second)
	for {
		if strings.Contains(d.log.String(), "bccguard started") {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				return d, nil
			}
		}
		select {
		case err := <-d.exited:
			return nil, fmt.Errorf("bccguard exited at start: %v\n%s%s", err, d.log, portHolder(d.log.String(), addr))
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("bccguard does not listen on %s:\n%s", addr, d.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// restarted is what a goroutine that started the daemon again hands back to
// the test (launchDaemon).
type restarted struct {
	d   *daemon
	err error
}

// daemon returns the restarted daemon, or fails the test.
func (r restarted) daemon(t *testing.T) *daemon {
	t.Helper()
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.d
}

// kill sends SIGKILL, as a crash would.
func (d *daemon) kill(t *testing.T) {
	t.Helper()
	d.cmd.Process.Kill()
	<-d.exited
}

// signal sends sig to the daemon.
func (d *daemon) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// checkLog fails the test on a data race report or on an e-mail address in
// the log: with the default audit level no address may be logged.
func (d *daemon) checkLog(t *testing.T) {
	t.Helper()
	log := d.log.String()
	if strings.Contains(log, "DATA RACE") {
		t.Errorf("data race in bccguard:\n%s", log)
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "@") {
			t.Errorf("address in the log at the default audit level: %s", line)
		}
	}
}

// stop sends SIGTERM and requires a clean exit.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if err := d.terminate(); err != nil {
		t.Fatal(err)
	}
}

// terminate is stop for a goroutine other than the test's own: it returns
// the failure (launchDaemon says why).
func (d *daemon) terminate() error {
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case err := <-d.exited:
		if err != nil {
			return fmt.Errorf("bccguard exited with %v:\n%s", err, d.log)
		}
	case <-time.After(60 * time.Second):
		// A hang detector, well past every shutdown_timeout in these
		// tests; the wait ends as soon as the daemon exits.
		return fmt.Errorf("bccguard did not stop on SIGTERM:\n%s", d.log)
	}
	if !strings.Contains(d.log.String(), "bccguard stopped") {
		return fmt.Errorf("no clean stop in the log:\n%s", d.log)
	}
	return nil
}

// portHolder says who listens on addr when the daemon could not bind it, so
// that a port taken between freeaddr's check and the daemon's bind can be
// traced (ss from iproute2, on every Debian system).
func portHolder(log, addr string) string {
	if !strings.Contains(log, "address already in use") {
		return ""
	}
	_, port, _ := net.SplitHostPort(addr)
	out, _ := exec.Command("ss", "-tanp", "sport = :"+port).CombinedOutput()
	return "\nsockets on port " + port + ":\n" + string(out)
}
