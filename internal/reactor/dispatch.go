package reactor

import (
	"time"

	"github.com/tcplab/tcplab/handler"
)

// dispatcher is where a connection's handler calls run: on the loop
// itself (inline, this file: reactor and uring) or on a pool of workers
// (pool.go: reactor-pool). The loop calls it with what happened to a
// connection; it never touches the socket. Every method but start,
// quiesce and stop runs on the connection's loop.
type dispatcher interface {
	// open runs, or queues, the handler's Open for a new connection.
	open(c *conn)
	// input hands over bytes read for c: Data runs on them, now or on a
	// worker. It reports whether reading c must stop until holding(c)
	// turns false (the dispatcher then posts a taskInput).
	input(c *conn, p []byte) (hold bool)
	// ended tells that c's input ended after the bytes handed over: the
	// peer finished (reason nil) or the read failed.
	ended(c *conn, reason error)
	// closed tells that c's socket is closed: Closed is due.
	closed(c *conn)
	// resumed tells that reading c resumes after backpressure.
	resumed(c *conn)
	// unpaused tells that a pause of reading c the session asked for has
	// ended: the input it left unconsumed goes to Data again, before
	// more is read.
	unpaused(c *conn)
	// holding reports whether a Data call's worth of c's input still
	// waits in the dispatcher.
	holding(c *conn) bool
	// offloaded tells that a function c's session offloaded has returned
	// (handler.Offload): what it held back (Data, the end of input,
	// Closed) may go on. late is set when c's loop had ended (a shutdown
	// cut short): the worker that ran the function calls it.
	offloaded(c *conn, late bool)

	// start runs when Serve does; quiesce is shutdown's first phase (no
	// Data starts afterwards, and quiesce returns once calls in progress
	// have); stop ends the dispatcher once the loops have stopped.
	start()
	quiesce()
	stop()
}

// inline runs every handler call on the connection's loop, between its
// reads: a reply written from Data is flushed before the loop moves on.
type inline struct{}

func (inline) open(c *conn) {
	l := c.l
	c.out.Hold()
	sess := l.s.h.Open(c)
	c.mu.Lock()
	c.sess = sess
	c.mu.Unlock()
	if c.pending != nil {
		offloadInline(c)
	}
	l.flushHeld(c)
}

func (inline) input(c *conn, p []byte) bool {
	if c.resumeAt != 0 {
		// Only TLS hands over input while c's reading is paused at its
		// session's request: the rest of what one read's records held. It
		// waits with what the session left, for the pause to end (again).
		c.in = append(c.in, p...)
		return false
	}
	deliver(c, p)
	return false
}

func (inline) ended(c *conn, reason error) {
	c.startClosing(reason, false, time.Now().Add(c.l.s.cfg.DrainTimeout))
	c.l.finish(c)
}

func (inline) closed(c *conn) {
	c.in = nil
	c.sess.Closed(c.closeReason())
	if c.pending != nil {
		offloadInline(c)
	}
}

func (inline) offloaded(c *conn, late bool) { c.l.resumeInline(c, late) }

// offloadInline starts what c's session offloaded in the event that just
// ran on the loop, and holds c's delivery until it returns.
func offloadInline(c *conn) {
	c.offloading = true
	c.l.offload(c)
}

func (inline) resumed(c *conn)  { again(c) }
func (inline) unpaused(c *conn) { again(c) }

// again passes c's session the input it left unconsumed, once c may be
// read again: a session that paused its reading (handler.Flow) left whole
// frames there, which must not wait for more bytes to arrive.
func again(c *conn) {
	if len(c.in) > 0 && c.l.canRead(c) && !c.closer.Sealed() {
		deliver(c, nil)
	}
}

func (inline) holding(*conn) bool { return false }
func (inline) start()             {}
func (inline) quiesce()           {}
func (inline) stop()              {}

// deliver passes fresh bytes, after any the session left unconsumed, to
// the session on the loop, and flushes what it wrote on the loop too.
func deliver(c *conn, fresh []byte) {
	l, s := c.l, c.l.s
	in := fresh
	if len(c.in) > 0 {
		c.in = append(c.in, fresh...)
		in = c.in
	}
	c.out.Hold()
	used, err := c.sess.Data(in)
	if c.pending != nil {
		offloadInline(c) // before the flush, which may close c: Closed follows the function
	}
	l.flushHeld(c)
	if c.removed {
		return
	}
	if err == nil {
		err = handler.CheckConsumed(used, len(in))
	}
	if err != nil {
		c.startClosing(err, false, time.Now().Add(s.cfg.DrainTimeout))
		l.finish(c)
		return
	}
	rest := in[used:]
	if c.offloading {
		// The session stopped at what it offloaded: what it left is
		// input that waits for the function too, ahead of what comes.
		l.keepFront(c, rest)
		rest = nil
	}
	if s.trackPartial(c, used, len(rest)) {
		l.armFrame(c)
	}
	// A session that paused its reading left input to be passed again
	// before anything more is read: it cannot grow meanwhile.
	pause := c.pause.Asked()
	switch {
	case len(rest) > s.cfg.MaxInbound && !pause:
		c.startClosing(handler.ErrInputTooLarge, true, time.Now().Add(s.cfg.DrainTimeout))
		l.finish(c)
		return
	case len(rest) == 0 && cap(c.in) > keepInCap:
		c.in = nil
	default:
		c.in = append(c.in[:0], rest...) // rest may overlap c.in: append copies forward
	}
	// Whether the socket is full is known once a write found it so, or
	// (a driver that sends later) not yet while a send is held: then only
	// the buffer's level counts.
	if (c.wantOut || c.sending) && !c.paused.Load() && c.out.Len() > s.highWater {
		c.paused.Store(true) // reading stops; TCP flow control holds the peer back
	}
	if pause {
		l.pauseReading(c)
	}
}
