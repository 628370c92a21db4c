package postfixtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// runWithTTY is like run, but gives the command a pseudo-terminal as stdout
// and stderr. The postfix command writes its diagnostics to stderr only if
// stderr is a terminal and otherwise to syslog, which test containers usually
// lack; at that point the maillog is not in use yet, so without a terminal
// the reason for a failed start (e.g. an invalid main.cf value) would be
// lost. If no pseudo-terminal is available it falls back to run.
func runWithTTY(name string, args ...string) (string, error) {
	ptmx, pts, err := openPTY()
	if err != nil {
		return run(name, args...)
	}
	defer ptmx.Close()

	cmd := exec.Command(name, args...)
	cmd.Stdout = pts
	cmd.Stderr = pts
	startErr := cmd.Start()
	// Only the child may hold the terminal open, so that reading the master
	// side ends (with EIO) once the child and its descendants let go.
	pts.Close()
	if startErr != nil {
		return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), startErr)
	}

	var out bytes.Buffer
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(&out, ptmx) // Ends with EIO, or at the deadline below.
	}()
	waitErr := cmd.Wait()
	// A daemon started by the command might keep the terminal open; do not
	// wait for it longer than it takes to drain what is buffered.
	_ = ptmx.SetReadDeadline(time.Now().Add(2 * time.Second))
	<-copied

	// The terminal turns "\n" into "\r\n".
	text := strings.ReplaceAll(out.String(), "\r\n", "\n")
	if waitErr != nil {
		return text, fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), waitErr, strings.TrimSpace(text))
	}
	return text, nil
}

// openPTY opens a new pseudo-terminal pair. The master side stays in Go's
// poller (no Fd calls, which would make it blocking) so that read deadlines
// work.
func openPTY() (ptmx, pts *os.File, err error) {
	ptmx, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	rc, err := ptmx.SyscallConn()
	if err != nil {
		ptmx.Close()
		return nil, nil, err
	}
	var n uint32
	var ioctlErr error
	err = rc.Control(func(fd uintptr) {
		var unlock int32
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
			ioctlErr = fmt.Errorf("unlock pty: %w", e)
			return
		}
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
			ioctlErr = fmt.Errorf("get pty number: %w", e)
		}
	})
	if err = errors.Join(err, ioctlErr); err != nil {
		ptmx.Close()
		return nil, nil, err
	}
	pts, err = os.OpenFile("/dev/pts/"+strconv.FormatUint(uint64(n), 10), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		ptmx.Close()
		return nil, nil, err
	}
	return ptmx, pts, nil
}
