package postfixtest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// rootPrefix names the per-instance temporary directories. Together with
	// confSubdir it lets Start recognise alternate_config_directories entries
	// that this package created, so that leftovers of interrupted runs can be
	// cleaned up without touching anyone else's entries.
	rootPrefix = "postfixtest-"
	confSubdir = "etc"
	// ownerFile, in an instance's root, holds the PID of the test process
	// that owns the instance.
	ownerFile = "owner.pid"
	// lockName is the flock file, in the default configuration directory,
	// that serialises edits of the default main.cf across test processes.
	lockName     = ".postfixtest.lock"
	altDirsParam = "alternate_config_directories"
)

// system describes the installed Postfix.
type system struct {
	postfix, postconf, postqueue string // absolute paths of the commands
	defaultConfDir               string // where the default main.cf lives
	mailOwner                    string // the account Postfix daemons run as
}

var (
	systemOnce sync.Once
	systemInfo system
	systemErr  error
)

// lookupSystem locates the Postfix commands and the compiled-in defaults
// once per test binary.
func lookupSystem() (system, error) {
	systemOnce.Do(func() { systemInfo, systemErr = probeSystem() })
	return systemInfo, systemErr
}

func probeSystem() (system, error) {
	var s system
	for _, c := range []struct {
		name string
		dst  *string
	}{{"postfix", &s.postfix}, {"postconf", &s.postconf}, {"postqueue", &s.postqueue}} {
		p, err := findCommand(c.name)
		if err != nil {
			return s, err
		}
		*c.dst = p
	}
	// -d: the compiled-in defaults are what a fresh instance uses (our main.cf
	// does not set mail_owner), and the default config_directory is by
	// definition the directory holding the default main.cf.
	out, err := run(s.postconf, "-d", "-h", "config_directory", "mail_owner")
	if err != nil {
		return s, err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		return s, fmt.Errorf("postconf -d: unexpected output %q", out)
	}
	s.defaultConfDir, s.mailOwner = strings.TrimSpace(lines[0]), strings.TrimSpace(lines[1])
	return s, nil
}

// findCommand looks for a Postfix command in PATH and then in the usual
// sbin directories, which are often missing from PATH in CI containers.
func findCommand(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or /usr/sbin, /usr/local/sbin, /sbin (is Postfix installed?)", name)
}

// run executes a command and returns its combined output; the error includes
// the command line and output, since Postfix commands explain failures there.
func run(name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// editAltDirs applies edit to alternate_config_directories of the default
// main.cf. "postconf -e" rewrites main.cf via a temporary file and rename,
// so two unsynchronised read-modify-write cycles (e.g. two test packages
// starting instances at the same time) would lose one update; an flock
// shared by all processes using this package prevents that.
func editAltDirs(sys system, edit func([]string) []string) error {
	lockPath := filepath.Join(sys.defaultConfDir, lockName)
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open lock file: %w", err)
	}
	defer f.Close()
	if err := flock(f, syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", lockPath, err)
	}
	// Closing the file releases the lock.

	out, err := run(sys.postconf, "-c", sys.defaultConfDir, "-h", altDirsParam)
	if err != nil {
		return err
	}
	// Postfix list values are separated by commas and/or whitespace.
	old := strings.FieldsFunc(out, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
	dirs := edit(slices.Clone(old))
	if slices.Equal(old, dirs) {
		return nil
	}
	if len(dirs) == 0 {
		// Delete the parameter rather than leave an empty assignment behind,
		// so a main.cf that did not mention it ends up as it started.
		_, err = run(sys.postconf, "-c", sys.defaultConfDir, "-X", altDirsParam)
	} else {
		_, err = run(sys.postconf, "-c", sys.defaultConfDir, "-e", altDirsParam+" = "+strings.Join(dirs, ", "))
	}
	if err != nil {
		return err
	}
	// Every Postfix command reads the default main.cf (to check
	// alternate_config_directories), including "postfix -c DIR start".
	return backdate(filepath.Join(sys.defaultConfDir, "main.cf"))
}

// backdate sets the modification time of a freshly written main.cf a few
// seconds into the past. Postfix treats a main.cf modified within the last
// second as possibly half-written and re-reads it every 300 ms until it has
// cooled down (dict_load_file_xt), so without this every Postfix command run
// shortly after an edit stalls for up to two seconds; with a few instances
// per test that adds up to most of the run time.
func backdate(path string) error {
	t := time.Now().Add(-3 * time.Second)
	if err := os.Chtimes(path, t, t); err != nil {
		return fmt.Errorf("backdate %s: %w", path, err)
	}
	return nil
}

// flock retries on EINTR, which the Go runtime's preemption signals can
// cause while blocked waiting for another process to release the lock.
func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// isOurConfDir reports whether dir looks like a configuration directory
// created by this package (<tmp>/postfixtest-*/etc).
func isOurConfDir(dir string) bool {
	return filepath.IsAbs(dir) && filepath.Base(dir) == confSubdir &&
		strings.HasPrefix(filepath.Base(filepath.Dir(dir)), rootPrefix)
}

// reapStale drops entries left behind by test processes that died without
// running their cleanups (e.g. killed by a go test -timeout or ^C). Their
// Postfix masters would otherwise keep running forever. An entry is stale
// when its directory is gone or the PID recorded in its owner file no longer
// exists. Must be called with the edit lock held.
func reapStale(sys system, dirs []string) []string {
	return slices.DeleteFunc(dirs, func(dir string) bool {
		if !isOurConfDir(dir) {
			return false
		}
		root := filepath.Dir(dir)
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return true
		}
		b, err := os.ReadFile(filepath.Join(root, ownerFile))
		if err != nil {
			return false // Being set up right now, or not ours after all.
		}
		owner, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || processAlive(owner) {
			return false
		}
		stopInstance(sys, dir, filepath.Join(root, "queue"))
		_ = os.RemoveAll(root)
		return true
	})
}

// processAlive reports whether a process with the given PID exists and is
// not a zombie (see groupAlive for why zombies matter).
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	state, _, ok := procStat(pid)
	return !ok || !isZombie(state)
}

// masterPID reads the PID of an instance's master process from the queue
// directory, or returns 0 if it is not available.
func masterPID(queueDir string) int {
	b, err := os.ReadFile(filepath.Join(queueDir, "pid", "master.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0
	}
	return pid
}

// stopInstance stops an instance and waits until all of its processes have
// exited. Waiting matters: its children (smtpd, qmgr, postlogd, ...) may
// still be exiting and writing into the queue and log after the master is
// gone, which would make removing the temporary directory fail with
// "directory not empty". The master runs in its own process group (it calls
// setsid), so the group identifies all of them. Returns the output of the
// postfix command if it failed.
//
// "postfix abort" rather than "postfix stop": both send SIGTERM to the master,
// but "stop" then polls with "sleep 1", adding a second to almost every
// test; polling the process group here is much quicker.
func stopInstance(sys system, confDir, queueDir string) error {
	pid := masterPID(queueDir)
	if pid == 0 || !processAlive(pid) {
		return nil
	}
	_, stopErr := run(sys.postfix, "-c", confDir, "abort")
	if waitGroupGone(pid, 10*time.Second) {
		return stopErr
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	if waitGroupGone(pid, 5*time.Second) {
		return stopErr
	}
	return errors.Join(stopErr, fmt.Errorf("processes of process group %d still running after SIGKILL", pid))
}

// waitGroupGone waits up to timeout for process group pgid to become empty.
func waitGroupGone(pgid int, timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		if !groupAlive(pgid) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return !groupAlive(pgid)
}

// groupAlive reports whether a live (non-zombie) process is left in process
// group pgid. Zombies are ignored because the master is daemonised and
// reparented to PID 1, which reaps it only some time after it exited (and in
// some containers never); a zombie holds no files open, so it cannot disturb
// cleanup. Without /proc it falls back to kill(-pgid, 0), which counts
// zombies.
func groupAlive(pgid int) bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		err := syscall.Kill(-pgid, 0)
		return err == nil || errors.Is(err, syscall.EPERM)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if state, g, ok := procStat(pid); ok && g == pgid && !isZombie(state) {
			return true
		}
	}
	return false
}

// procStat returns the state and process group of pid from /proc; ok is
// false if that is not available (no /proc, or the process is gone).
func procStat(pid int) (state string, pgrp int, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", 0, false
	}
	// Format: "pid (comm) state ppid pgrp ..."; comm may contain spaces and
	// parentheses, so parse from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 {
		return "", 0, false
	}
	pgrp, err = strconv.Atoi(f[2])
	if err != nil {
		return "", 0, false
	}
	return f[0], pgrp, true
}

func isZombie(state string) bool { return state == "Z" || state == "X" }
