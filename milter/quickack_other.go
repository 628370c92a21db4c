//go:build !linux

package milter

import "net"

// quickAck is Linux-only (TCP_QUICKACK); elsewhere delayed ACKs stay.
func quickAck(net.Conn) {}
