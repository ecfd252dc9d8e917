package engine

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/admit"
	"github.com/tcplab/tcplab/internal/drain"
	"github.com/tcplab/tcplab/internal/outbuf"
	"github.com/tcplab/tcplab/internal/serving"
)

// The blocking models (seq, goroutine, thread, pool, and the children of
// fork and prefork) all serve a connection the same way, here: a read loop
// on the model's own goroutine or thread, which calls the session and then
// flushes what the session wrote on that same goroutine, plus one writer
// goroutine per connection that flushes writes made from elsewhere (a chat
// room's fan-out). Whoever holds the buffer's flush token writes; the other
// waits. No byte is copied except once, into the outbound buffer.

const (
	readBufStart = 16 << 10 // first read buffer per connection
	readBufMax   = 64 << 10 // it doubles up to this while reads fill it
)

// streamConn is one connection of a blocking model. It implements
// handler.Conn.
type streamConn struct {
	nc   net.Conn
	set  *streamSet
	out  *outbuf.Buffer
	wake chan struct{} // cap 1: the writer has something to look at
	// drained gets a token each time the writer finishes a batch, for a
	// reader paused by backpressure.
	drained chan struct{}

	// dataMu is held while the session runs Data; quiesce takes it to wait
	// for a call in progress.
	dataMu sync.Mutex

	// pending is what the session offloaded during the event running now
	// (handler.Offload), for the serving goroutine to run when it returns.
	pending func()

	mu    sync.Mutex
	sess  handler.Session
	quiet bool // shutdown: deliver no more Data

	closer outbuf.Closer
	stop   chan struct{} // closed when the close is released

	// pause is the pause of reading the session asked for (handler.Flow);
	// the read loop waits it out on pauseTimer, made on first use.
	pause      serving.PauseRequest
	pauseTimer *time.Timer
}

var (
	_ handler.Conn = (*streamConn)(nil)
	_ handler.Flow = (*streamConn)(nil)
)

func (c *streamConn) Write(p []byte) error {
	err := c.out.Write(p)
	if errors.Is(err, handler.ErrOverflow) {
		c.set.stats.Overflows.Add(1)
		c.closeWith(handler.ErrOverflow, true, time.Now().Add(outbuf.OverflowLinger))
	}
	return err
}

func (c *streamConn) Close(reason error) {
	c.closeWith(reason, false, time.Now().Add(c.set.cfg.DrainTimeout))
}

func (c *streamConn) CloseWith(last []byte, reason error) {
	deadline := time.Now().Add(c.set.cfg.DrainTimeout)
	if c.closer.Close(c.out, reason, outbuf.Final(last), deadline) {
		c.release(deadline)
	}
}

// Queued reports the bytes not yet taken by the socket and the bound.
func (c *streamConn) Queued() (n, limit int) { return c.out.Len(), c.out.Max() }

// PauseReading pauses the read loop after the Data call (see handler.Flow).
func (c *streamConn) PauseReading(d time.Duration) { c.pause.Ask(d) }

func (c *streamConn) LocalAddr() net.Addr  { return c.nc.LocalAddr() }
func (c *streamConn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

func (c *streamConn) signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// closeWith starts closing: reads stop, later writes fail, queued bytes
// (plus the session's farewell if the engine initiated the close) flush
// until deadline, and then the socket closes. It reports false if the
// connection was already closing.
func (c *streamConn) closeWith(reason error, byEngine bool, deadline time.Time) bool {
	if !c.mark(reason, byEngine, deadline) {
		return false
	}
	c.release(deadline)
	return true
}

// mark is closeWith's first half: it records the reason and closes the
// outbound buffer behind the farewell, so nothing written later can follow
// it. It reports false if the connection was already closing.
func (c *streamConn) mark(reason error, byEngine bool, deadline time.Time) bool {
	c.mu.Lock()
	sess := c.sess
	c.mu.Unlock()
	return c.closer.Close(c.out, reason, outbuf.FarewellOf(sess, byEngine), deadline)
}

// release is closeWith's second half: it wakes the reader and the writer
// so the connection flushes and ends. Shutdown marks every connection
// before releasing any, so no session's Closed (a chat LEAVE, say) can
// write to another connection ahead of its farewell.
func (c *streamConn) release(deadline time.Time) {
	close(c.stop)
	c.nc.SetReadDeadline(time.Now())
	c.nc.SetWriteDeadline(deadline)
	c.signal(c.wake)
}

func (c *streamConn) isClosing() bool { return c.closer.Closing() }

// writeDeadline is WriteTimeout from now, or the close deadline if sooner.
func (c *streamConn) writeDeadline() time.Time {
	d := time.Now().Add(c.set.cfg.WriteTimeout)
	if until, closing := c.closer.Deadline(); closing && until.Before(d) {
		d = until
	}
	return d
}

// flush writes batches while it can take the flush token. It reports false
// if the socket failed.
func (c *streamConn) flush() bool {
	observe := c.set.cfg.ObserveQueue
	for b := c.out.Take(); b != nil; b = c.out.Next(b) {
		if observe != nil {
			observe(len(b))
		}
		if err := c.writeBatch(b); err != nil {
			c.out.Abort()
			if errors.Is(err, os.ErrDeadlineExceeded) && !c.isClosing() {
				err = handler.ErrWriteTimeout
			}
			if c.closeWith(err, true, time.Now()) && err == handler.ErrWriteTimeout {
				c.set.stats.WriteTimeouts.Add(1) // not when a farewell is what stalled
			}
			return false
		}
		c.signal(c.drained)
	}
	return true
}

// writePiece is the most a blocking write is given one write timeout for.
// A TLS connection cannot resume a write that timed out part way (its
// record state is lost), so a large batch goes in pieces, each with a
// fresh deadline.
const writePiece = 64 << 10

// writeBatch writes b whole. The write timeout counts from the last
// progress, not from the start of the batch: a peer that reads slowly but
// steadily is not closed however long a large batch takes. Each piece gets
// a fresh deadline, and on a plain socket a write that took some bytes
// before its deadline goes on with a fresh one, so only a socket that took
// nothing for WriteTimeout (or, under TLS, less than a piece) fails.
func (c *streamConn) writeBatch(b []byte) error {
	_, isTLS := c.nc.(*tls.Conn)
	for len(b) > 0 {
		piece := b[:min(len(b), writePiece)]
		c.nc.SetWriteDeadline(c.writeDeadline())
		if c.isClosing() {
			// A close may have set its (sooner) deadline on the socket
			// between writeDeadline and the line above: set it again.
			c.nc.SetWriteDeadline(c.writeDeadline())
		}
		n, err := c.nc.Write(piece)
		c.set.stats.BytesOut.Add(uint64(n))
		b = b[n:]
		if n > 0 {
			// The buffer's level (its bound, the backpressure marks)
			// counts only what the socket has not taken yet.
			c.out.Sent(n)
			c.signal(c.drained)
		}
		if err != nil && (n == 0 || isTLS || !errors.Is(err, os.ErrDeadlineExceeded)) {
			return err
		}
	}
	return nil
}

// writer flushes writes that arrive while the reader is blocked in Read,
// and finishes the flush once the connection is closing.
func (c *streamConn) writer(done chan<- struct{}) {
	defer close(done)
	for range c.wake {
		c.flush()
		// Sealed, not just closing: between the two the farewell is not
		// queued yet, and a writer that left then would never send it.
		if c.closer.Sealed() && c.out.Idle() {
			return
		}
	}
}

// afterCallback ends the hold taken around a session call and flushes what
// the call wrote, on the calling goroutine.
func (c *streamConn) afterCallback() {
	if c.out.Unhold() {
		c.flush()
	}
}

// readLoop reads until the peer finishes, the session fails, or the
// connection is closed.
func (c *streamConn) readLoop() {
	cfg := &c.set.cfg
	// One read is at most half the outbound bound, so a session that
	// answers each byte with a byte (echo) stays within the bound: reading
	// pauses above the high-water mark, MaxPending/2.
	chunk := max(1, min(readBufMax, cfg.MaxPending/2))
	buf := make([]byte, min(readBufStart, chunk))
	have := 0
	frame := frameClock{record: recordClock(c.nc)}
	for {
		n, err := c.nc.Read(buf[have:min(len(buf), have+chunk)])
		if n > 0 {
			c.set.stats.BytesIn.Add(uint64(n))
			filled := have+n == len(buf)
			have += n
			var used int
			var ok bool
			if have, used, ok = c.deliverAll(buf, have); !ok {
				return
			}
			frame.after(c, used, have)
			if c.pause.Asked() {
				if have, ok = c.paused(buf, have, &frame); !ok {
					return
				}
			}
			if have == 0 && len(buf) > readBufMax {
				buf = make([]byte, readBufMax) // a large frame is done: give its buffer back
			}
			if have > cfg.MaxInbound {
				c.closeWith(handler.ErrInputTooLarge, true, time.Now().Add(cfg.DrainTimeout))
				return
			}
			if filled && (have > len(buf)/2 || len(buf) < readBufMax) {
				nb := make([]byte, min(2*len(buf), max(readBufMax, cfg.MaxInbound+1)))
				copy(nb, buf[:have])
				buf = nb
			}
			if !c.waitBelowLowWater() {
				return
			}
		}
		if err != nil {
			if c.quiesced() {
				<-c.stop // shutdown stopped reading; it closes the connection next
				return
			}
			if frame.expired(err) {
				c.set.stats.FrameTimeouts.Add(1)
				c.closeWith(handler.ErrFrameTimeout, true, time.Now().Add(cfg.DrainTimeout))
				return
			}
			if errors.Is(err, io.EOF) {
				err = nil // orderly close (or half-close) by the peer
			}
			c.Close(err)
			return
		}
	}
}

// paused waits out the pause the session asked for, then passes it the
// have bytes it left unconsumed before anything more is read, and again
// after each pause it asks for meanwhile. It returns the bytes still
// unconsumed, and false if the connection closed or the session failed.
// The inbound limit is not checked between pauses: nothing is read then.
func (c *streamConn) paused(buf []byte, have int, frame *frameClock) (int, bool) {
	for c.pause.Asked() {
		d := c.pause.Take()
		c.set.stats.Stall(d)
		if c.pauseTimer == nil {
			c.pauseTimer = time.NewTimer(d)
		} else {
			c.pauseTimer.Reset(d)
		}
		select {
		case <-c.pauseTimer.C:
		case <-c.stop:
			c.pauseTimer.Stop()
			return have, false
		}
		if have == 0 {
			break
		}
		var used int
		var ok bool
		if have, used, ok = c.deliverAll(buf, have); !ok {
			return have, false
		}
		frame.after(c, used, have)
	}
	return have, true
}

// deliverAll passes buf[:have] to the session (deliver), and again what
// it left each time it offloaded a function, which has run: that input
// waited for it, and goes before anything more is read. It returns the
// bytes left unconsumed, moved to the front of buf, what the last call
// consumed, and false if the connection is closing or the session failed.
func (c *streamConn) deliverAll(buf []byte, have int) (left, used int, ok bool) {
	used, offloaded, ok := c.deliver(buf[:have])
	for ok && offloaded && used < have {
		have = copy(buf, buf[used:have])
		if !c.waitBelowLowWater() {
			return have, 0, false
		}
		used, offloaded, ok = c.deliver(buf[:have])
	}
	if !ok {
		return have, used, false
	}
	return copy(buf, buf[used:have]), used, true
}

// frameClock enforces Config.FrameTimeout on a blocking connection: while
// the session has left input unconsumed (a frame begun), the socket's read
// deadline is the time that input began plus the timeout, so a client that
// trickles bytes meets the deadline however often it sends one. It belongs
// to the read loop.
type frameClock struct {
	since  time.Time   // when the unconsumed input began; zero if none
	set    bool        // a read deadline is set
	record *recordConn // under TLS, the same clock for incomplete records
}

// after updates the clock after a Data call that consumed used bytes and
// left have. Input left after a call that consumed something is a new
// frame, begun in the bytes just read.
func (f *frameClock) after(c *streamConn, used, have int) {
	timeout := c.set.cfg.FrameTimeout
	if timeout <= 0 {
		return
	}
	switch {
	case have == 0:
		f.since = time.Time{}
		if !f.set {
			return
		}
		f.set = false
		c.nc.SetReadDeadline(time.Time{})
	case used > 0 || f.since.IsZero():
		f.since = time.Now()
		f.set = true
		c.nc.SetReadDeadline(f.since.Add(timeout))
	default:
		return
	}
	// Shutdown or a close may have set a deadline of now to stop the
	// read; the one just set must not undo it.
	if c.quiesced() {
		c.nc.SetReadDeadline(time.Now())
	}
}

// expired reports whether err is the frame deadline passing (or, under
// TLS, the deadline of an incomplete record).
func (f *frameClock) expired(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) && (f.set || f.record != nil && f.record.expired())
}

// deliver passes in to the session, flushes what it wrote, and runs what
// it offloaded (offloaded reports that it did). It reports false, without
// calling the session, once shutdown has quiesced the connection or it is
// closing, and false if the session failed.
func (c *streamConn) deliver(in []byte) (used int, offloaded, ok bool) {
	c.dataMu.Lock()
	if c.quiesced() {
		c.dataMu.Unlock()
		return 0, false, false
	}
	c.out.Hold()
	used, err := c.sess.Data(in)
	if err == nil {
		err = handler.CheckConsumed(used, len(in))
	}
	// Counted before quiesce can see the call over: shutdown waits for it.
	fn := c.takePending()
	// What Data wrote is in the buffers now, which is all quiesce waits
	// for: the flush below may block on a peer that does not read, and
	// shutdown's deadline must not wait for it.
	c.dataMu.Unlock()
	c.afterCallback()
	if err != nil {
		c.Close(err)
	}
	if fn != nil {
		c.runOffloaded(fn)
	}
	return used, fn != nil, err == nil
}

// quiesce stops Data calls on the connection, waiting for one in progress
// to return. Shutdown quiesces every connection before closing any, so a
// message read from one connection and fanned out to others reaches their
// buffers ahead of their farewells.
func (c *streamConn) quiesce() {
	c.mu.Lock()
	c.quiet = true
	c.mu.Unlock()
	c.dataMu.Lock()
	//lint:ignore SA2001 the empty critical section waits for a Data call in progress
	c.dataMu.Unlock()
	c.nc.SetReadDeadline(time.Now())
}

// quiesced reports whether the session must get no more Data.
func (c *streamConn) quiesced() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.quiet || c.closer.Closing()
}

// waitBelowLowWater pauses reading while the outbound buffer is over the
// high-water mark, until it drains under the low-water mark. It reports
// false if the connection closed meanwhile.
func (c *streamConn) waitBelowLowWater() bool {
	cfg := &c.set.cfg
	if c.out.Len() <= serving.HighWater(*cfg) {
		return true
	}
	for c.out.Len() > serving.LowWater(*cfg) {
		c.signal(c.wake)
		select {
		case <-c.drained:
		case <-c.stop:
			return false
		}
	}
	return true
}

// streamSet serves blocking connections and tracks them for shutdown.
type streamSet struct {
	h     handler.Handler
	cfg   Config
	stats *serving.Counters

	limiter *admit.Limiter // per-address limits; nil if none
	// ctx is cancelled when shutdown starts: TLS handshakes stop.
	ctx    context.Context
	cancel context.CancelFunc
	// tlsRefusals sends refusals over TLS; nil without TLS.
	tlsRefusals *serving.TLSRefusals

	mu       sync.Mutex
	conns    map[*streamConn]struct{}
	shutting bool
	deadline time.Time
	running  inflight // connections being served, and their offloaded functions
}

func newStreamSet(h handler.Handler, cfg Config, stats *serving.Counters) *streamSet {
	ctx, cancel := context.WithCancel(context.Background())
	return &streamSet{
		h: h, cfg: cfg, stats: stats, conns: map[*streamConn]struct{}{},
		limiter:     serving.Limiter(cfg),
		ctx:         ctx,
		cancel:      cancel,
		tlsRefusals: serving.NewTLSRefusals(ctx, cfg),
	}
}

// begin registers a connection that is about to be served. It reports
// false, closing nc, if the set is shutting down.
func (s *streamSet) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting {
		return false
	}
	s.running.add(1, 0)
	return true
}

// serve runs one connection to its end on the calling goroutine. The
// caller must have called begin.
func (s *streamSet) serve(nc net.Conn) {
	defer s.running.add(-1, 0)
	if serving.TLSConfig(s.cfg) != nil {
		var ok bool
		if nc, ok = s.handshake(nc); !ok {
			return
		}
	}
	c := &streamConn{
		nc:      nc,
		set:     s,
		wake:    make(chan struct{}, 1),
		drained: make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	c.out = outbuf.New(s.cfg.MaxPending, func() { c.signal(c.wake) })
	s.stats.Accepted.Add(1)
	s.stats.Open.Add(1)
	defer s.stats.Open.Add(-1)

	writerDone := make(chan struct{})
	go c.writer(writerDone)

	c.out.Hold()
	sess := s.h.Open(c)
	c.mu.Lock()
	c.sess = sess
	c.mu.Unlock()
	c.afterCallback()

	s.mu.Lock()
	s.conns[c] = struct{}{}
	shutting, deadline := s.shutting, s.deadline
	s.mu.Unlock()
	if shutting {
		c.closeWith(handler.ErrShutdown, true, deadline)
	}
	c.runPending() // what Open offloaded, before any Data

	c.readLoop()
	<-writerDone
	reason := c.closer.Reason()
	if reason != nil {
		lingerClose(nc, time.Now().Add(outbuf.CloseLinger))
	} else {
		nc.Close()
	}
	sess.Closed(reason)
	c.runPending()

	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// shutdown closes every connection, letting queued writes flush until
// deadline, and waits for them to end. After the deadline, or once ctx is
// done, it closes the sockets outright. It reports whether the drain
// finished first.
func (s *streamSet) shutdown(ctx context.Context, deadline time.Time) bool {
	s.cancel()
	s.mu.Lock()
	s.shutting = true
	s.deadline = deadline
	conns := make([]*streamConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.quiesce()
	}
	// What sessions offloaded before reading stopped finishes, and
	// writes, before any farewell.
	fnsDone := s.running.waitFor(ctx, deadline, noFns)
	if q, ok := s.h.(handler.Quiescer); ok {
		q.Quiesced(deadline)
	}
	var marked []*streamConn
	for _, c := range conns {
		if c.mark(handler.ErrShutdown, true, deadline) {
			marked = append(marked, c)
		}
	}
	for _, c := range marked {
		c.release(deadline)
	}
	if s.running.waitFor(ctx, deadline, idle) {
		return fnsDone
	}
	s.mu.Lock()
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	// A connection running an offloaded function ends after it; the rest
	// end soon now.
	s.running.waitFor(ctx, time.Time{}, noConns)
	return false
}

// waitBy waits for wg until deadline or until ctx is done, and reports
// whether it finished first. If not, it calls late, which must make wg
// finish soon, and waits for it.
func waitBy(ctx context.Context, wg *sync.WaitGroup, deadline time.Time, late func()) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	if drain.Wait(ctx, done, deadline) {
		return true
	}
	late()
	<-done
	return false
}

// refuse turns a connection away before Open because of reason (a cap was
// reached, or the server is shutting down): it counts the refusal, sends
// the handler's refusal bytes if the handler is a handler.Refuser, and
// closes the connection. The bytes are small and the socket new, so the
// write normally lands in the socket buffer at once; serving.RefuseTimeout
// bounds it otherwise. Over TLS the refusal follows a handshake, at a
// bounded rate (serving.TLSRefusals), and is otherwise left out.
func (s *streamSet) refuse(nc net.Conn, reason error) {
	s.stats.Refusal(reason)
	var msg []byte
	if r, ok := s.h.(handler.Refuser); ok {
		msg = r.Refuse(reason)
	}
	if s.tlsRefusals != nil {
		if !s.tlsRefusals.Refuse(msg, reason, func() (net.Conn, error) { return nc, nil }) {
			nc.Close()
		}
		return
	}
	if len(msg) > 0 {
		nc.SetWriteDeadline(time.Now().Add(serving.RefuseTimeout))
		nc.Write(msg)
	}
	serving.DiscardReceived(nc)
	nc.Close()
}

// lingerClose ends a connection the server closes while the peer may
// still be sending (outbuf.Linger), then closes it. A TLS connection says
// close_notify first, if its handshake is done.
func lingerClose(nc net.Conn, until time.Time) {
	if tc, ok := nc.(*tls.Conn); ok {
		tc.CloseWrite()
	}
	outbuf.Linger(rawConn(nc), until)
	nc.Close()
}
