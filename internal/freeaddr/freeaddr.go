// Package freeaddr finds a free TCP address on loopback, for tests that
// must give a listen address to a process (a daemon, a config file,
// Postfix's master.cf) rather than hand it a listener.
//
// The port is checked by binding it and closing again, so someone else can
// take it before the process binds it. The most likely someone is not
// another listener but any outgoing connection on the machine: connect()
// takes its local port from the kernel's ephemeral range, and the end-to-end
// tests open thousands of connections while other packages start daemons.
// Ports are therefore chosen below that range, where only an explicit bind
// can land, and each is reserved for the life of the process that chose it
// (a lock file), so that no two test processes, nor two calls in one, are
// handed the same port.
package freeaddr

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// lowest is the lowest port chosen: above the well-known and the common
// fixed service ports (Postfix content filters use 10024-10026).
const lowest = 11000

// Loopback returns "127.0.0.1:PORT" of a port free a moment ago.
func Loopback(t testing.TB) string {
	t.Helper()
	port, err := Port()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// Port returns a TCP port on 127.0.0.1 that was free a moment ago, below the
// kernel's ephemeral range when there is room there.
func Port() (int, error) {
	if top := ephemeralStart(); top-lowest >= 1000 {
		for range 100 {
			port := lowest + rand.IntN(top-lowest)
			if reserve(port) && free(port) {
				return port, nil
			}
		}
	}
	// No room below the ephemeral range, or nothing free there: let the
	// kernel choose (the race described above is then possible again).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("freeaddr: find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// reserved holds the lock files of the ports this process was given: a
// lock lasts as long as its file stays open, and the kernel drops it when
// the process ends, however it ends.
var (
	mu       sync.Mutex
	reserved = map[int]*os.File{}
)

// reserve takes port for this process, or reports that this or another
// process using freeaddr has it.
func reserve(port int) bool {
	mu.Lock()
	defer mu.Unlock()
	if reserved[port] != nil {
		return false
	}
	dir := filepath.Join(os.TempDir(), "bccguard-freeaddr")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return true // no locks: the bind check alone
	}
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return false
	}
	reserved[port] = f
	return true
}

func free(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// ephemeralStart is the first port the kernel gives outgoing connections
// (Linux; 32768 elsewhere and when the file cannot be read, the Linux and
// FreeBSD default being 32768 and 49152).
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return 32768
	}
	n, err := strconv.Atoi(fields[0])
	if err != nil {
		return 32768
	}
	return n
}
