package milter

import (
	"fmt"
	"net"
	"syscall"
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

// peerOf returns the address to name c by: for a unix-socket connection,
// the socket with the peer's pid and uid; otherwise c's remote address.
func peerOf(c net.Conn) net.Addr {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return c.RemoteAddr()
	}
	p := unixPeer{socket: uc.LocalAddr().String()}
	raw, err := uc.SyscallConn()
	if err != nil {
		return p
	}
	raw.Control(func(fd uintptr) {
		cred, err := syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
		if err == nil {
			p.pid, p.uid, p.known = cred.Pid, cred.Uid, true
		}
	})
	return p
}
