package engine

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"github.com/tcplab/tcplab/internal/serving"
)

// recordConn sits under crypto/tls on a server connection and applies the
// frame timeout to TLS records. crypto/tls hands the server no plaintext
// until a whole record has arrived, so a client trickling a record's
// bytes would be invisible to the frame clock of the read loop, which
// only sees what the session left unconsumed. recordConn follows the
// record boundaries in the bytes it reads (serving.Records) and, while a
// record is incomplete, makes the socket's read deadline the time the
// record began plus the timeout, or the deadline the server set if that
// is sooner.
type recordConn struct {
	net.Conn
	timeout time.Duration

	mu       sync.Mutex
	external time.Time // the read deadline the server set
	since    time.Time // when the incomplete record began; zero between records
	fired    bool      // a read failed at the record deadline
	records  serving.Records
}

// SetReadDeadline records the server's deadline and applies the sooner of
// it and the record deadline.
func (c *recordConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.external = t
	return c.Conn.SetReadDeadline(c.deadline())
}

// SetDeadline sets both deadlines, through SetReadDeadline.
func (c *recordConn) SetDeadline(t time.Time) error {
	return errors.Join(c.SetReadDeadline(t), c.Conn.SetWriteDeadline(t))
}

// deadline is the effective read deadline. Called with mu held.
func (c *recordConn) deadline() time.Time {
	if c.since.IsZero() {
		return c.external
	}
	d := c.since.Add(c.timeout)
	if !c.external.IsZero() && c.external.Before(d) {
		return c.external
	}
	return d
}

func (c *recordConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && !c.since.IsZero() &&
		(c.external.IsZero() || c.since.Add(c.timeout).Before(c.external)) {
		c.fired = true
	}
	if n > 0 {
		before := c.since
		completed := c.records.Scan(p[:n])
		switch partial := c.records.Partial(); {
		case !partial:
			c.since = time.Time{}
		case completed || c.since.IsZero():
			c.since = time.Now()
		}
		if c.since != before {
			c.Conn.SetReadDeadline(c.deadline())
		}
	}
	return n, err
}

// expired reports whether a read failed because a record stayed
// incomplete for the timeout.
func (c *recordConn) expired() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fired
}
