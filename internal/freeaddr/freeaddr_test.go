package freeaddr

import (
	"net"
	"strconv"
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
	// Chosen at random: two parallel test packages asking at the same moment
	// must not get the same port.
	if len(seen) < 40 {
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
