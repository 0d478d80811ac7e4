//go:build linux

package vpcd

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// quickAck re-arms TCP_QUICKACK. Linux clears it again after a while, so it
// is set before every read: without it the kernel delays the ACK of vpcd's
// command (up to ~40 ms) and every APDU pays for it through Nagle on the
// vpcd side.
type quickAck struct{ rc syscall.RawConn }

func newQuickAck(c net.Conn) quickAck {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return quickAck{}
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return quickAck{}
	}
	return quickAck{rc: rc}
}

func (q quickAck) arm() {
	if q.rc == nil {
		return
	}
	_ = q.rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1)
	})
}
