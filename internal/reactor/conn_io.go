package reactor

import (
	"errors"
	"time"
)

// This file is the part of the loop core that moves a connection's bytes:
// reading (whether it may, and handing input to the dispatcher), writing
// (the flush, the driver's sends, backpressure and the write timeout's
// stall) and the close protocol (stop reading, flush by a deadline, close
// the socket, tell the dispatcher).
//
// Delivery is held while a function the session offloaded runs
// (handler.Offload; inline dispatch, whose Data runs on the loop): input
// gathers in loop.waiting instead of reaching the session, canRead says
// no once MaxInbound bytes wait, the peer's end waits behind that input,
// and Closed waits for the function. When it returns, deliverWaiting
// hands the input to Data a read's worth at a time, as reading would
// have, and reading resumes once none waits. Reading paused until a time,
// which the session asks for (handler.Flow.PauseReading), only needs
// canRead to say no and a timer: pauseReading sets resumeAt and arms it,
// and resumeReading, when it fires, has the dispatcher pass the session
// what it left unconsumed before the loop reads again. The TLS layer
// (tls.go) is a dispatcher around the model's own: input hands it
// ciphertext, and conn.Write encrypts into the outbound buffer.

// canRead reports whether c may be read now: not paused by backpressure
// or at its session's request, not closing, not past its input's end, not
// holding a Data call's worth of input in the dispatcher, and with no
// input waiting for an offloaded function, or less than MaxInbound while
// it runs.
func (l *loop) canRead(c *conn) bool {
	return !l.quiet && !c.finishing && !c.eof && !c.held && !c.paused.Load() && c.resumeAt == 0 &&
		(!c.waiting || c.offloading && len(l.waiting[c]) < l.s.cfg.MaxInbound)
}

// readLater queues c for a read on this pass of the loop: the driver may
// have input for it that no new event will announce.
func (l *loop) readLater(c *conn) {
	if !c.inReady && c.rdReady {
		c.inReady = true
		l.ready = append(l.ready, c)
	}
}

func (l *loop) runReady() {
	batch := l.ready
	l.ready = l.readySpare
	for i, c := range batch {
		batch[i] = nil
		c.inReady = false
		if !c.removed && c.rdReady && l.canRead(c) {
			l.read(c)
		}
	}
	l.readySpare = batch[:0]
}

// read asks the driver for c's input, which canRead allows.
func (l *loop) read(c *conn) {
	if c.closer.Sealed() {
		l.finish(c) // a close was posted but not handled yet: read no more
		return
	}
	l.drv.read(c)
}

// input hands bytes the driver read for c to the dispatcher, or keeps
// them for after the function c's session offloaded (under TLS the TLS
// layer keeps the plaintext instead).
func (l *loop) input(c *conn, p []byte) {
	if c.offloading && c.tls == nil {
		l.keep(c, p)
		return
	}
	if l.disp.input(c, p) {
		c.held = true
	}
}

// inputEnded handles the end of c's input: the peer's FIN (reason nil) or
// a read error, after every byte before it went to input. A FIN that
// comes while an offloaded function runs waits behind the input kept for
// after it (deliverWaiting passes it on); a read error closes c at once.
func (l *loop) inputEnded(c *conn, reason error) {
	c.eof = true
	if (c.offloading || c.waiting) && reason == nil {
		return
	}
	l.disp.ended(c, reason)
}

// hungUp closes c, which failed with nothing to read or write that would
// report it.
func (l *loop) hungUp(c *conn, reason error) {
	c.startClosing(reason, false, time.Now())
	l.remove(c)
}

// errHangUp is the close reason of a connection that hung up without a
// pending error.
var errHangUp = errors.New("connection hung up")

// pauseReading starts the pause of reading c's session asked for during a
// Data call (handler.Flow): reading stops until a timer calls
// resumeReading. The loop goes on serving its other connections.
func (l *loop) pauseReading(c *conn) {
	if c.removed {
		return
	}
	if d := c.pause.Take(); d > 0 {
		l.s.stats.Stall(d)
		c.resumeAt = max(c.resumeAt, l.now()+d)
	}
	if c.resumeAt == 0 {
		l.disp.unpaused(c) // nothing to wait for after all
		return
	}
	l.addTimer(c, c.resumeAt)
}

// resumeReading ends c's pause: the dispatcher passes the session the
// input it left unconsumed, then reading goes on.
func (l *loop) resumeReading(c *conn) {
	c.resumeAt = 0
	l.disp.unpaused(c)
	l.readLater(c)
}

// recheck is the dispatcher's request to look at c's reading again: it
// paused c, or consumed input it was holding.
func (l *loop) recheck(c *conn) {
	if c.removed {
		return
	}
	if c.waiting && !c.offloading {
		l.deliverWaiting(c) // drained posted it
		return
	}
	if c.held && !l.disp.holding(c) {
		c.held = false
		l.readLater(c)
	}
	l.drained(c)
}

// flushHeld ends the hold taken around a session call on the loop and
// writes what the call wrote, taking the flush token in the same step.
func (l *loop) flushHeld(c *conn) {
	if b := c.out.UnholdTake(); b != nil {
		l.observe(b)
		c.batch, c.off = b, 0
		l.flush(c)
	}
}

// flush writes c's outbound data until it is drained, the socket is full,
// or the driver keeps a send. Only the loop flushes, so the flush token is
// the loop's whenever it wants it; a batch the socket could not take
// whole stays in c.batch until the socket can take more (loop.flush
// again) or the driver's send completes (loop.sendDone).
func (l *loop) flush(c *conn) {
	if c.sending || c.removed {
		return
	}
	progressed := false
	if c.batch == nil {
		c.batch, c.off = c.out.Take(), 0
		l.observe(c.batch)
	}
	for c.batch != nil {
		rest := c.batch[c.off:]
		n, err := l.drv.send(c, rest)
		if n == sendPending {
			c.sending = true
			return
		}
		if err != nil {
			l.sendFailed(c, err)
			return
		}
		if n > 0 {
			l.out += uint64(n)
			progressed = true
		}
		if n == len(rest) {
			// Next gives the token back when nothing is pending; a later
			// write then notifies the loop again.
			c.batch, c.off = c.out.Next(c.batch), 0
			l.observe(c.batch)
			continue
		}
		// The socket is full (a short write means the next would fail).
		c.off += n
		if n > 0 {
			c.out.Sent(n)
		}
		now := l.now()
		if progressed && c.wantOut {
			c.stallSince = now
		}
		l.stalled(c, now)
		l.drained(c)
		return
	}
	l.sentAll(c)
}

// sendDone is the driver's report on a send it kept: n bytes went out
// (none if it only let go of the send to be asked again), or err. The
// flush goes on.
func (l *loop) sendDone(c *conn, n int, err error) {
	c.sending = false
	if err != nil {
		l.sendFailed(c, err)
		return
	}
	if n > 0 {
		l.out += uint64(n)
		if c.wantOut {
			c.stallSince = l.passNow
		}
		c.off += n
		switch {
		case c.off < len(c.batch):
			c.out.Sent(n) // the rest of the batch goes in another send
		default:
			if c.batch, c.off = c.out.Next(c.batch), 0; c.batch == nil {
				l.sentAll(c) // Next gave the flush token back: nothing to Take
				return
			}
			l.observe(c.batch)
		}
		// Every send that makes progress may have taken the buffer under
		// the low-water mark, even when more is queued behind it (a
		// fan-out writer that always has something pending): resume
		// reading then.
		l.drained(c)
	}
	l.flush(c)
}

// sendFailed closes c after a failed send.
func (l *loop) sendFailed(c *conn, err error) {
	c.out.Abort()
	c.batch = nil
	c.startClosing(err, true, time.Now())
	l.remove(c)
}

// stalled records that c's output is held up (the socket is full, a send
// did not complete at once, or it waits for memory): the write timeout
// runs from now, and from each send that makes progress, and backpressure
// may pause reading.
func (l *loop) stalled(c *conn, now time.Duration) {
	if !c.wantOut {
		c.wantOut = true
		c.stallSince = now
		l.addTimer(c, now+l.s.cfg.WriteTimeout)
	}
}

// sentAll is reached when c has nothing left to send: reading may resume,
// and a closing connection is done.
func (l *loop) sentAll(c *conn) {
	c.wantOut = false
	l.drained(c)
	if c.finishing && c.out.Idle() {
		l.remove(c)
	}
}

// drained resumes reading a paused connection once its outbound buffer is
// under the low-water mark.
func (l *loop) drained(c *conn) {
	if c.paused.Load() && c.out.Len() <= l.s.lowWater {
		c.paused.Store(false)
		l.disp.resumed(c)
		if c.waiting && !c.offloading {
			// Input waits for Data; a flush may be under way here, so
			// deliver it on the loop's next pass.
			l.post(task{kind: taskInput, c: c})
			return
		}
		l.readLater(c)
	}
}

// observe reports a batch taken for writing to Config.ObserveQueue.
func (l *loop) observe(batch []byte) {
	if f := l.s.cfg.ObserveQueue; f != nil && batch != nil {
		f(len(batch))
	}
}

// finish stops reading c and flushes it; the socket closes when the flush
// is done or at the close deadline.
func (l *loop) finish(c *conn) {
	if c.finishing || c.removed {
		return
	}
	c.finishing = true
	l.flush(c)
	if c.removed {
		return
	}
	at := l.clock(c.closeDeadline())
	if at <= l.now() {
		// A deadline already past (a Shutdown called late) cuts the
		// drain as its timer would.
		l.cut = l.cut || l.stopping && !c.out.Idle()
		l.remove(c)
		return
	}
	l.addTimer(c, at)
}

// remove closes c's socket through the driver and tells the dispatcher.
func (l *loop) remove(c *conn) {
	if c.removed {
		return
	}
	c.removed = true
	if c.batch != nil {
		c.out.Abort() // give the flush token back; writers see ErrClosed
		c.batch = nil
	}
	l.s.releaseSlot(c) // first: the slot is free by the time the peer sees the close
	l.drv.close(c, !c.rdHup && !c.eof)
	l.conns[c.fd] = nil
	l.n--
	l.load.Add(-1)
	l.s.stats.Open.Add(-1)
	if c.waiting {
		c.waiting = false
		delete(l.waiting, c)
	}
	if c.offloading {
		c.closedDue = true // Closed follows the function (offloaded)
		return
	}
	l.disp.closed(c)
}

// offload starts the function c's session offloaded during the event that
// just returned, on the server's workers; the dispatcher holds delivery
// until it returns (inline: conn.offloading). Whoever ran the event calls
// it: the loop, or a reactor-pool worker.
func (l *loop) offload(c *conn) {
	fn := c.pending
	c.pending = nil
	l.offloads.Add(1)
	s := l.s
	s.work.submit(func() {
		if err := s.stats.RunOffloaded(fn, s.cfg.Logger, c.RemoteAddr()); err != nil {
			c.closeWith(err, true, time.Now().Add(s.cfg.DrainTimeout))
		}
		if !l.post(task{kind: taskReturned, c: c}) {
			l.disp.offloaded(c, true) // the loop has ended (a shutdown cut it short): finish here
		}
	})
}

// offloadDone is the loop's end of a function c's session offloaded: it
// has returned.
func (l *loop) offloadDone(c *conn) {
	l.offloads.Add(-1)
	l.disp.offloaded(c, false)
}

// resumeInline ends the hold offload put on an inline connection: Data
// gets the input that waited, the peer's end follows it, and reading
// resumes; or, if c was closed meanwhile, Closed runs now. late is set
// when the loop has ended and a worker calls it.
func (l *loop) resumeInline(c *conn, late bool) {
	c.offloading = false
	switch {
	case c.closedDue && late:
		c.closedDue = false
		c.in = nil
		c.sess.Closed(c.closeReason())
		runLate(c)
	case c.closedDue:
		c.closedDue = false
		l.disp.closed(c)
	case !c.removed:
		l.deliverWaiting(c)
	}
}

// keep keeps bytes read while an offloaded function runs, for Data after
// it.
func (l *loop) keep(c *conn, p []byte) { l.setWaiting(c, append(l.waiting[c], p...)) }

// keepFront puts p, what the session left when it offloaded a function,
// ahead of the input that waits for the function.
func (l *loop) keepFront(c *conn, p []byte) {
	if len(p) == 0 {
		return
	}
	b := make([]byte, 0, len(p)+len(l.waiting[c]))
	l.setWaiting(c, append(append(b, p...), l.waiting[c]...))
}

func (l *loop) setWaiting(c *conn, b []byte) {
	if l.waiting == nil {
		l.waiting = map[*conn][]byte{}
	}
	l.waiting[c] = b
	c.waiting = true
}

// deliverWaiting passes the input that waited for an offloaded function
// to Data, at most a read's worth per call, while nothing stops it (the
// session offloads again, backpressure pauses it, c closes, shutdown
// stops delivery); then the peer's end, if it came, or reading resumes.
func (l *loop) deliverWaiting(c *conn) {
	for c.waiting {
		switch {
		case c.offloading || c.paused.Load() || c.finishing || c.removed || l.quiet:
			return
		case c.closer.Sealed():
			l.finish(c) // closing: no more Data
			return
		}
		b := l.waiting[c]
		n := min(len(b), l.s.chunk)
		if n == len(b) {
			delete(l.waiting, c)
			c.waiting = false
		} else {
			l.waiting[c] = b[n:] // what comes while a new function runs goes after
		}
		deliver(c, b[:n])
	}
	if c.offloading || c.finishing || c.removed || l.quiet {
		return
	}
	l.armFrame(c) // its timer did not act while the function ran
	if c.eof {
		l.disp.ended(c, nil)
		return
	}
	l.readLater(c)
}

// runLate runs in place what c's session offloaded from a Closed that ran
// after c's loop had ended.
func runLate(c *conn) {
	s := c.l.s
	for c.pending != nil {
		fn := c.pending
		c.pending = nil
		s.stats.RunOffloaded(fn, s.cfg.Logger, c.RemoteAddr())
	}
}
