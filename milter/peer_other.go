//go:build !linux

package milter

import "net"

// peerOf returns the address to name c by: for a unix-socket connection,
// the socket (SO_PEERCRED, which gives the peer's pid and uid, is Linux's);
// otherwise c's remote address.
func peerOf(c net.Conn) net.Addr {
	if uc, ok := c.(*net.UnixConn); ok {
		return unixPeer{socket: uc.LocalAddr().String()}
	}
	return c.RemoteAddr()
}
