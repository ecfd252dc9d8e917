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
	"github.com/tcplab/tcplab/internal/serving"
)

// conn is one connection of an event loop. It implements handler.Conn.
//
// Fields are grouped by who may touch them: the owning loop only; the loop
// and any goroutine under mu; or atomics. The I/O driver keeps its own
// per-connection state (io_uring: ringConn, found by id), and so does the
// dispatcher (reactor-pool: ex).
type conn struct {
	l   *loop
	out *outbuf.Buffer

	// Owned by the loop.
	fd         int
	gen        int32         // tells this connection's events and timers from an earlier one's on fd
	id         int32         // the driver's handle (io_uring: the id in its operations' user data)
	rdReady    bool          // the driver may have input for c (epoll: the socket may hold unread bytes)
	rdHup      bool          // the peer has shut down its side: reads end in EOF
	inReady    bool          // in the loop's ready list
	held       bool          // the dispatcher holds a Data call's worth of input: read no more until it lets go
	eof        bool          // input ended (the peer finished or failed): read no more
	finishing  bool          // closing: reading stopped, flushing until done or the deadline
	removed    bool          // the socket is closed
	sending    bool          // the driver holds a send of c's; loop.sendDone continues the flush
	wantOut    bool          // output is held up (the socket is full): the write timeout runs
	offloading bool          // inline dispatch: a function the session offloaded has not returned: no Data
	waiting    bool          // input read while offloading waits in loop.waiting, for Data after the function
	closedDue  bool          // removed while offloading: Closed follows the function
	limited    bool          // counted in the per-address limits until removed
	batch      []byte        // the batch being written, while the loop holds the flush token
	off        int           // bytes of batch already written
	stallSince time.Duration // loop clock when the socket last took bytes, while wantOut
	timerAt    time.Duration // the earliest timer armed for this conn, 0 if none
	in         []byte        // inline dispatch: bytes the session left unconsumed
	resumeAt   time.Duration // reading paused at the session's request until then (loop clock), 0 if not

	remote, local netip.AddrPort

	// tls is the connection's TLS state (tls.go), set before the loop
	// registers it; nil without TLS.
	tls *tlsConn

	// paused is set while the outbound buffer is over the high-water mark:
	// reading stops until it drains below the low-water mark.
	paused atomic.Bool
	// closer is the close state; its Sealed (closing, farewell queued) is
	// what the loop's hot path checks: a flusher that sees it and an idle
	// buffer may close the socket.
	closer outbuf.Closer
	// pause is a pause of reading the session asked for (handler.Flow),
	// until the loop takes it and sets resumeAt.
	pause serving.PauseRequest
	// partialAt is when (loop clock, ns) the input the session left
	// unconsumed began, 0 if there is none: the frame timeout counts from
	// it. Set by whoever runs Data (the loop, or a reactor-pool worker).
	partialAt atomic.Int64

	mu   sync.Mutex
	sess handler.Session
	ex   *execState // reactor-pool dispatch: the connection's executor (pool.go)

	// pending holds what the session offloaded during the event running
	// now (handler.Offload); whoever runs the session's events (the loop,
	// or a reactor-pool worker) takes it when the event returns. It is
	// last: cold, apart from the fields the hot path reads.
	pending func()
}

var (
	_ handler.Conn      = (*conn)(nil)
	_ handler.Offloader = (*conn)(nil)
	_ handler.Flow      = (*conn)(nil)
)

func (c *conn) Write(p []byte) error {
	var err error
	if c.tls != nil {
		err = c.tls.write(p)
	} else {
		err = c.out.Write(p)
	}
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
	if c.closer.Close(c.out, reason, c.farewell(outbuf.Final(last)), time.Now().Add(c.l.s.cfg.DrainTimeout)) {
		c.l.post(task{kind: taskClose, c: c})
	}
}

// Offload keeps fn to run once the session's current event has returned
// (handler.Offload): the goroutine running the event takes it then.
func (c *conn) Offload(fn func()) { c.pending = serving.AddOffloaded(c.pending, fn) }

// Queued reports the bytes not yet taken by the socket and the bound.
func (c *conn) Queued() (n, limit int) { return c.out.Len(), c.out.Max() }

// PauseReading pauses reading after the Data call (see handler.Flow): the
// loop stops reading c and arms a timer, and serves its other connections
// meanwhile.
func (c *conn) PauseReading(d time.Duration) { c.pause.Ask(d) }

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
	return c.closer.Close(c.out, reason, c.farewell(outbuf.FarewellOf(sess, byEngine)), deadline)
}

// farewell returns f as it goes out: as it is, or under TLS encrypted and
// followed by close_notify (even when f is nil).
func (c *conn) farewell(f handler.Farewell) handler.Farewell {
	if c.tls != nil {
		return tlsFarewell{t: c.tls, inner: f}
	}
	return f
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
