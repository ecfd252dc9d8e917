package outbuf

import (
	"io"
	"net"
	"time"
)

// Linger is the lingering half of a close the server starts while the
// peer may still be sending. Linux answers a close with unread input, or
// input that arrives after the close, with a reset, and a reset can cost
// the peer the farewell it has not read yet. So Linger shuts c's write
// side (a FIN after what was written), then reads and drops what the peer
// still sends until the peer closes too or until passes. The caller closes
// c afterwards.
func Linger(c net.Conn, until time.Time) {
	if hc, ok := c.(interface{ CloseWrite() error }); ok {
		hc.CloseWrite()
	}
	c.SetReadDeadline(until)
	io.Copy(io.Discard, c)
}
