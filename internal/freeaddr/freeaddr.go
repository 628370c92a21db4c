// Package freeaddr finds a free TCP address on loopback, for tests that
// must give a listen address to a process (a daemon, a config file) rather
// than hand it a listener.
package freeaddr

import (
	"net"
	"testing"
)

// Loopback returns "127.0.0.1:PORT" of a port free a moment ago.
func Loopback(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
