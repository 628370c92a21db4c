package milter

import (
	"fmt"
)

// unixPeer names the process at the other end of a unix-socket connection
// in warnings. A unix socket's remote address is empty (the client does not
// bind a name), so without this a malformed packet or a session killed for
// silence would be logged as coming from the socket itself; the kernel's
// SO_PEERCRED says which process connected, which is what an admin needs
// to find a misbehaving local client.
type unixPeer struct {
	socket string
	pid    int32
	uid    uint32
	known  bool
}

func (p unixPeer) Network() string { return "unix" }

func (p unixPeer) String() string {
	if !p.known {
		return p.socket
	}
	return fmt.Sprintf("%s(pid=%d,uid=%d)", p.socket, p.pid, p.uid)
}
