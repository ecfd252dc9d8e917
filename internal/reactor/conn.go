package reactor

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/outbuf"
)

// conn is one connection of an event loop. It implements handler.Conn.
//
// Fields are grouped by who may touch them: the owning loop only; the loop
// and any goroutine under mu; or atomics.
type conn struct {
	l   *loop
	out *outbuf.Buffer

	// Owned by the loop.
	fd         int
	gen        int32
	wantOut    bool          // the socket is full: waiting for an output edge
	rdReady    bool          // the socket may hold unread bytes
	rdHup      bool          // the peer has shut down its side: reads end in EOF
	inReady    bool          // in the loop's ready list
	inFull     bool          // reactor-pool: enough bytes wait for the session; stop reading
	eof        bool          // reactor-pool: the peer finished or failed; read no more
	finishing  bool          // closing: reading stopped, flushing until done or the deadline
	removed    bool          // the socket is closed
	batch      []byte        // the batch being written, while the loop holds the flush token
	off        int           // bytes of batch already written
	stallSince time.Duration // loop clock when the socket last took bytes, while wantOut
	timerAt    time.Duration // the earliest timer armed for this conn, 0 if none
	in         []byte        // reactor: bytes the session left unconsumed
	limited    bool          // counted in the per-address limits until removed
	rc         ringConn      // io_uring loops only (ring.go)

	remote, local netip.AddrPort

	// paused is set while the outbound buffer is over the high-water mark:
	// reading stops until it drains below the low-water mark.
	paused atomic.Bool
	// closer is the close state; its Sealed (closing, farewell queued) is
	// what the loop's hot path checks: a flusher that sees it and an idle
	// buffer may close the socket.
	closer outbuf.Closer
	// partialAt is when (loop clock, ns) the input the session left
	// unconsumed began, 0 if there is none: the frame timeout counts from
	// it. Set by whoever runs Data (the loop, or a reactor-pool worker).
	partialAt atomic.Int64

	mu   sync.Mutex
	sess handler.Session
	ex   execState // reactor-pool: the per-connection executor
}

var _ handler.Conn = (*conn)(nil)

func (c *conn) Write(p []byte) error {
	err := c.out.Write(p)
	if errors.Is(err, handler.ErrOverflow) {
		c.l.s.stats.Overflows.Add(1)
		c.closeWith(handler.ErrOverflow, true, time.Now().Add(outbuf.OverflowLinger))
	}
	return err
}

func (c *conn) Close(reason error) {
	c.closeWith(reason, false, time.Now().Add(c.l.s.cfg.DrainTimeout))
}

func (c *conn) CloseWith(last []byte, reason error) {
	if c.closer.Close(c.out, reason, outbuf.Final(last), time.Now().Add(c.l.s.cfg.DrainTimeout)) {
		c.l.post(task{kind: taskClose, c: c})
	}
}

func (c *conn) LocalAddr() net.Addr  { return net.TCPAddrFromAddrPort(c.local) }
func (c *conn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.remote) }

// closeWith starts closing from any goroutine: later writes fail, the
// session's farewell (if the engine initiated the close) is queued after
// everything written, and the owning loop is told to stop reading and
// finish the flush by deadline.
func (c *conn) closeWith(reason error, byEngine bool, deadline time.Time) {
	if c.startClosing(reason, byEngine, deadline) {
		c.l.post(task{kind: taskClose, c: c})
	}
}

// startClosing records the close and closes the outbound buffer behind
// the session's farewell (outbuf.Closer). It reports false if the
// connection was already closing.
func (c *conn) startClosing(reason error, byEngine bool, deadline time.Time) bool {
	c.mu.Lock()
	sess := c.sess
	c.mu.Unlock()
	return c.closer.Close(c.out, reason, outbuf.FarewellOf(sess, byEngine), deadline)
}

// closeReason returns the reason given when closing started.
func (c *conn) closeReason() error { return c.closer.Reason() }

// closeDeadline returns the flush deadline set when closing started.
func (c *conn) closeDeadline() time.Time {
	d, _ := c.closer.Deadline()
	return d
}

// notify is the outbound buffer's callback: data waits that the loop has
// not been told about. The loop flushes it on its next pass.
func (c *conn) notify() { c.l.post(task{kind: taskFlush, c: c}) }
