package milter

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// Listen opens the listener for network "tcp" or "unix" (see
// config.ParseListen). For a unix socket it removes a stale socket file
// left by a crash, but only when nothing answers on it, and sets mode on
// the new socket before anything can connect through Postfix's retry.
// The socket file is removed when the listener is closed.
func Listen(network, address string, mode os.FileMode) (net.Listener, error) {
	if network != "unix" {
		ln, err := net.Listen(network, address)
		if err != nil {
			return nil, fmt.Errorf("milter: listen: %w", err)
		}
		return ln, nil
	}
	if err := removeStaleSocket(address); err != nil {
		return nil, err
	}
	// The umask keeps the socket closed to everyone until the chmod below
	// has set the configured mode.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", address)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("milter: listen: %w", err)
	}
	if err := os.Chmod(address, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("milter: listen: socket mode: %w", err)
	}
	return ln, nil
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("milter: listen: %w", err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("milter: listen: %s exists and is not a socket; not removing it", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("milter: listen: %s: address in use (another bccguard is running?)", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("milter: listen: remove stale socket: %w", err)
	}
	return nil
}
