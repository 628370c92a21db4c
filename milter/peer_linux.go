package milter

import (
	"net"
	"syscall"
)

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
