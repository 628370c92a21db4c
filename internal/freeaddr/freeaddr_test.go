package freeaddr

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// Ports come from below the ephemeral range (so no outgoing connection can
// take one before it is used) and can be bound.
func TestPortBelowEphemeralRange(t *testing.T) {
	top := ephemeralStart()
	if top-lowest < 1000 {
		t.Fatalf("this machine's ephemeral range starts at %d: no room below it for the test", top)
	}
	seen := map[int]bool{}
	for range 50 {
		port, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if port < lowest || port >= top {
			t.Fatalf("port %d outside [%d, %d)", port, lowest, top)
		}
		seen[port] = true
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("port %d returned as free: %v", port, err)
		}
		ln.Close()
	}
	// Reserved: one process is never given a port twice.
	if len(seen) != 50 {
		t.Errorf("50 calls gave only %d different ports", len(seen))
	}
}

func TestLoopbackIsListenable(t *testing.T) {
	addr := Loopback(t)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("Loopback gave %s: %v", addr, err)
	}
	ln.Close()
}

// A port reserved by another process is not handed out: the lock is what
// another test package's freeaddr holds, and a port this process already
// has is not handed out again.
func TestPortReservedElsewhereIsSkipped(t *testing.T) {
	port, err := Port()
	if err != nil {
		t.Fatal(err)
	}
	if reserve(port) {
		t.Errorf("port %d reserved twice by one process", port)
	}
	// Another process's lock: an open file description of its own, on a
	// port no test beside this one holds.
	var other int
	for other = lowest; ; other++ {
		if other >= ephemeralStart() {
			t.Fatal("no port left to lock")
		}
		f, err := os.OpenFile(filepath.Join(os.TempDir(), "bccguard-freeaddr", strconv.Itoa(other)), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			break
		}
	}
	if reserve(other) {
		t.Errorf("port %d, locked by another holder, was reserved", other)
	}
}
