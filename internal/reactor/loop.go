package reactor

import (
	"container/heap"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/backoff"
	"github.com/tcplab/tcplab/internal/outbuf"
)

const (
	readBufSize = 64 << 10 // one read buffer per loop
	maxEvents   = 256      // events taken per epoll_wait
	acceptBatch = 64       // accepts per listener event, so a flood of SYNs cannot starve the loop
	keepInCap   = 4 << 10  // a larger idle inbound buffer is released
)

// taskKind says what a task asks of a loop.
type taskKind uint8

const (
	taskAdd      taskKind = iota // register c, accepted by another loop
	taskFlush                    // c's outbound buffer has data the loop was not told about
	taskClose                    // c started closing on another goroutine
	taskInput                    // reactor-pool: the session consumed input or paused; recheck reading
	taskFrame                    // reactor-pool: the session left a new partial frame; arm its timer
	taskQuiesce                  // shutdown phase 1: stop accepting and reading, then ack
	taskMarkAll                  // shutdown phase 2a: mark every connection closing, queue its farewell, then ack
	taskCloseAll                 // shutdown phase 2b: close every connection by deadline
	taskCall                     // run fn on the loop, then ack
)

// task is a message to a loop from any goroutine.
type task struct {
	kind     taskKind
	c        *conn
	ack      chan<- struct{}
	deadline time.Time
	fn       func()
}

// loop is one event loop: an epoll instance served by one goroutine locked
// to its OS thread. It owns its connections' sockets; other goroutines
// reach it only through post.
type loop struct {
	s *Server
	poller
	events []unix.EpollEvent
	buf    []byte  // the read buffer every connection of this loop shares
	conns  []*conn // by fd
	n      int     // connections registered
	// lingering holds the sockets of connections the server closed while
	// the peer may still send (epoll loops): their write side is shut, and
	// the loop drops what arrives until the peer closes or CloseLinger
	// passes, so the close is not a reset that loses the farewell. The
	// value is the linger's generation, which its timer carries: the
	// descriptor may be reused and linger again before an earlier
	// linger's timer fires, and that timer must not end the new one.
	lingering map[int]int32
	lingerGen int32
	// ready holds connections whose socket may have more bytes than the
	// last read took: edge-triggered epoll will not report them again.
	ready, readySpare []*conn
	nextGen           int32
	// listeners are the listening sockets this loop accepts on.
	listeners []int
	epoch     time.Time
	yielded   time.Duration // loop clock at the last yield to the scheduler
	timers    timerHeap
	sa        unix.RawSockaddrAny // scratch for accept4 and getsockname
	scratch   [8]byte
	acceptBo  backoff.Backoff

	// ring is set on an io_uring loop (ring.go): the kernel reads, writes,
	// accepts and closes through submissions, and epoll is not used.
	ring *ringIO

	quiet        bool // shutdown phase 1 done: no accepting, no reading
	stopping     bool // shutdown phase 2: exit once every connection is gone
	cut          bool // connections were closed at the shutdown deadline
	stopDeadline time.Time

	_ [64]byte // keep the fields other goroutines write off the loop's lines

	// load counts connections placed on this loop (least-conns).
	load atomic.Int64

	qmu    sync.Mutex
	q      []task
	qspare []task
	// queued is set while q is not empty.
	queued atomic.Bool
	// sleeping is set while the loop is (about to be) in epoll_wait with a
	// timeout; a producer that clears it writes the eventfd. Posts that
	// find it clear cost no system call, so a burst of writes to this
	// loop's connections wakes it at most once.
	sleeping atomic.Bool
	// wakeups counts eventfd writes.
	wakeups atomic.Uint64

	_ [64]byte

	// in and out count bytes on the loop; run publishes them to bytesIn
	// and bytesOut once a pass, so the hot path has no atomic add.
	in, out           uint64
	bytesIn, bytesOut atomic.Uint64
}

func newLoop(s *Server) (*loop, error) {
	if s.model == Uring {
		return newRingLoop(s)
	}
	p, err := newPoller()
	if err != nil {
		return nil, err
	}
	return &loop{
		s:      s,
		poller: p,
		events: make([]unix.EpollEvent, maxEvents),
		buf:    make([]byte, readBufSize),
		epoch:  time.Now(),
	}, nil
}

// post queues t for the loop and wakes it if it sleeps.
func (l *loop) post(t task) {
	l.qmu.Lock()
	l.q = append(l.q, t)
	l.queued.Store(true)
	l.qmu.Unlock()
	if l.sleeping.Load() && l.sleeping.CompareAndSwap(true, false) {
		l.wakeups.Add(1)
		l.wake()
	}
}

// run is the loop's goroutine. It returns once shutdown has closed every
// connection.
func (l *loop) run(done func()) {
	defer done()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if l.ring != nil {
		l.runRing()
		return
	}
	for !l.stopping || l.n > 0 || len(l.lingering) > 0 {
		l.maybeYield(l.now())
		n, err := l.wait(l.events, l.sleepTimeout(len(l.ready) > 0))
		l.sleeping.Store(false)
		if err != nil {
			l.s.fail(err)
			time.Sleep(10 * time.Millisecond)
		}
		for i := range n {
			l.event(l.events[i])
		}
		l.endPass()
	}
	l.publish()
}

// endPass finishes a pass of the loop after its events: the tasks posted
// to it, the connections ready for another read, the timers due; then it
// publishes the byte counts.
func (l *loop) endPass() {
	if l.queued.Load() {
		l.runTasks()
	}
	if len(l.ready) > 0 {
		l.runReady()
	}
	if len(l.timers) > 0 {
		l.runTimers()
	}
	l.publish()
}

// yieldEvery is how often a busy loop yields to the Go scheduler. A loop
// goroutine never blocks in the scheduler (it waits in system calls), so
// without this the runtime's monitor finds it on one time slice for 10 ms,
// preempts it with a signal, takes its processor away, and then polls
// every 20 µs for the next millisecond: on a loop pinned to one CPU that
// cost about 4% of the CPU per round trip. A yield every 5 ms costs a
// hand-off to another thread and back, 200 times a second.
const yieldEvery = 5 * time.Millisecond

// maybeYield yields if yieldEvery has passed since the last yield.
func (l *loop) maybeYield(now time.Duration) {
	if now-l.yielded >= yieldEvery {
		l.yielded = now
		runtime.Gosched()
	}
}

// sleepTimeout returns how long the loop may wait for events, in ms (-1:
// no limit), and announces a wait to posters: 0 if busy or if tasks are
// queued, otherwise until the next timer. A poster that finds the loop
// announced writes the eventfd.
func (l *loop) sleepTimeout(busy bool) int {
	timeout := l.timeout()
	if busy {
		return 0
	}
	if timeout != 0 {
		l.sleeping.Store(true)
		if l.queued.Load() {
			l.sleeping.Store(false)
			timeout = 0
		}
	}
	return timeout
}

// publish makes the loop's byte counts visible to Stats.
func (l *loop) publish() {
	if l.in != l.bytesIn.Load() {
		l.bytesIn.Store(l.in)
	}
	if l.out != l.bytesOut.Load() {
		l.bytesOut.Store(l.out)
	}
}

// now is the loop's monotonic clock.
func (l *loop) now() time.Duration { return time.Since(l.epoch) }

// clock converts a wall deadline to the loop's clock.
func (l *loop) clock(t time.Time) time.Duration { return t.Sub(l.epoch) }

// timeout is the epoll_wait timeout in ms: -1 without timers.
func (l *loop) timeout() int {
	if len(l.timers) == 0 {
		return -1
	}
	d := l.timers[0].at - l.now()
	if d <= 0 {
		return 0
	}
	return int((d + time.Millisecond - 1) / time.Millisecond)
}

func (l *loop) event(ev unix.EpollEvent) {
	switch ev.Pad {
	case tagWake:
		l.drainWake(&l.scratch)
		return
	case tagListener:
		l.accept(int(ev.Fd))
		return
	}
	fd := int(ev.Fd)
	if fd >= len(l.conns) {
		return
	}
	c := l.conns[fd]
	if c == nil {
		if _, ok := l.lingering[fd]; ok {
			l.dropInput(fd)
		}
		return
	}
	if c.gen != ev.Pad {
		return // the fd was closed earlier in this batch
	}
	bad := ev.Events&(unix.EPOLLERR|unix.EPOLLHUP) != 0
	if ev.Events&unix.EPOLLRDHUP != 0 {
		c.rdHup = true
	}
	if ev.Events&unix.EPOLLIN != 0 || bad {
		c.rdReady = true
		if l.canRead(c) {
			l.readable(c)
		}
	}
	if !c.removed && c.wantOut && (ev.Events&unix.EPOLLOUT != 0 || bad) {
		l.flush(c)
	}
	if !c.removed && bad && !c.wantOut && !l.canRead(c) {
		// No read or write is due to report it, and edge-triggered epoll
		// will not say it again: the connection is dead.
		c.startClosing(sockError(c.fd, errHangUp), false, time.Now())
		l.remove(c)
	}
}

var errHangUp = fmt.Errorf("connection hung up")

func (l *loop) runTasks() {
	l.qmu.Lock()
	batch := l.q
	l.q = l.qspare
	l.queued.Store(false)
	l.qmu.Unlock()
	for i := range batch {
		l.do(batch[i])
		batch[i] = task{}
	}
	l.qspare = batch[:0]
}

func (l *loop) do(t task) {
	c := t.c
	switch t.kind {
	case taskAdd:
		l.register(c)
	case taskFlush:
		if !c.removed {
			l.flush(c)
		}
	case taskClose:
		l.finish(c)
	case taskInput:
		l.recheck(c)
	case taskFrame:
		if !c.removed {
			l.armFrame(c)
		}
	case taskQuiesce:
		l.quiesce()
		t.ack <- struct{}{}
	case taskMarkAll:
		l.markAll(t.deadline)
		t.ack <- struct{}{}
	case taskCloseAll:
		l.closeAll(t.deadline)
	case taskCall:
		t.fn()
		t.ack <- struct{}{}
	}
}

// register makes c one of the loop's connections and opens its session.
func (l *loop) register(c *conn) {
	if c.fd >= len(l.conns) {
		l.conns = slices.Grow(l.conns, c.fd+1-len(l.conns))[:max(c.fd+1, cap(l.conns))]
	}
	if l.nextGen++; l.nextGen <= 0 {
		l.nextGen = 1
	}
	c.gen = l.nextGen
	if l.ring != nil {
		l.ringAttach(c)
	} else if err := l.ctl(unix.EPOLL_CTL_ADD, c.fd, connEvents, c.gen); err != nil {
		l.s.cfg.Logger.Warn("reactor: dropping connection", "err", err)
		unix.Close(c.fd)
		l.load.Add(-1)
		l.s.releaseSlot(c)
		return
	}
	l.conns[c.fd] = c
	l.n++
	l.s.stats.Accepted.Add(1)
	l.s.stats.Open.Add(1)
	if l.s.pool != nil {
		l.s.pool.open(c)
	} else {
		c.out.Hold()
		sess := l.s.h.Open(c)
		c.mu.Lock()
		c.sess = sess
		c.mu.Unlock()
		l.flushHeld(c)
	}
	if l.stopping && !c.removed {
		c.startClosing(handler.ErrShutdown, true, l.stopDeadline)
		l.finish(c)
	}
}

// connEvents is every connection's registration, made once: edge-
// triggered input and output, and the peer's FIN. Output edges come only
// after a write found the socket full, so nothing is re-registered to
// pause reading or to wait for space.
const connEvents = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET

// canRead reports whether c may be read now: not paused by backpressure,
// not closing, and (reactor-pool) not holding a Data call's worth of
// unconsumed bytes.
func (l *loop) canRead(c *conn) bool {
	return !l.quiet && !c.finishing && !c.eof && !c.inFull && !c.paused.Load()
}

// readLater queues c for a read on this pass of the loop: its socket may
// hold bytes that no new edge will announce.
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
			l.readable(c)
		}
	}
	l.readySpare = batch[:0]
}

// readable reads once from c and hands the bytes on. Connections are
// edge-triggered: a read that may have left bytes behind puts c on the
// ready list, to be read again on the next pass.
func (l *loop) readable(c *conn) {
	if c.closer.Sealed() {
		l.finish(c) // a close was posted but not handled yet: read no more
		return
	}
	if l.ring != nil {
		l.ringResume(c)
		return
	}
	want := l.s.chunk
	n, errno := rawRead(c.fd, l.buf[:want])
	if n > 0 {
		l.in += uint64(n)
		// A read that took less than it asked for emptied the socket; one
		// that filled the buffer may have left more behind, and after the
		// peer's FIN the end of input is still to be read.
		if c.rdReady = n == want || c.rdHup; c.rdReady {
			l.readLater(c)
		}
		if l.s.pool != nil {
			if l.s.pool.input(c, l.buf[:n]) {
				c.inFull = true
			}
			return
		}
		l.deliver(c, l.buf[:n])
		return
	}
	c.rdReady = false
	if errno == unix.EAGAIN || errno == unix.EINTR {
		return
	}
	var reason error // nil: orderly close or half-close by the peer
	if errno != 0 {
		reason = fmt.Errorf("read: %w", errno)
	}
	l.inputEnded(c, reason)
}

// inputEnded handles the end of c's input: the peer's FIN (reason nil) or
// a read error.
func (l *loop) inputEnded(c *conn, reason error) {
	if l.s.pool != nil {
		// The executor may not have delivered everything read so far: it
		// closes the connection once it has.
		c.eof = true
		l.s.pool.endOfInput(c, reason)
		return
	}
	c.startClosing(reason, false, time.Now().Add(l.s.cfg.DrainTimeout))
	l.finish(c)
}

// deliver passes fresh bytes, after any the session left unconsumed, to
// the session on the loop, and flushes what it wrote on the loop too.
func (l *loop) deliver(c *conn, fresh []byte) {
	in := fresh
	if len(c.in) > 0 {
		c.in = append(c.in, fresh...)
		in = c.in
	}
	c.out.Hold()
	used, err := c.sess.Data(in)
	l.flushHeld(c)
	if c.removed {
		return
	}
	if err == nil {
		err = handler.CheckConsumed(used, len(in))
	}
	if err != nil {
		c.startClosing(err, false, time.Now().Add(l.s.cfg.DrainTimeout))
		l.finish(c)
		return
	}
	rest := in[used:]
	if l.s.trackPartial(c, used, len(rest)) {
		l.armFrame(c)
	}
	switch {
	case len(rest) > l.s.cfg.MaxInbound:
		c.startClosing(handler.ErrInputTooLarge, true, time.Now().Add(l.s.cfg.DrainTimeout))
		l.finish(c)
		return
	case len(rest) == 0 && cap(c.in) > keepInCap:
		c.in = nil
	default:
		c.in = append(c.in[:0], rest...) // rest may overlap c.in: append copies forward
	}
	// An io_uring loop submits its sends later: whether the socket is
	// full is not known yet, so only the buffer's level counts.
	if (c.wantOut || l.ring != nil) && !c.paused.Load() && c.out.Len() > l.s.highWater {
		c.paused.Store(true) // reading stops; TCP flow control holds the peer back
	}
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

// flush writes c's outbound data until it is drained or the socket is
// full. Only the loop flushes, so the flush token is the loop's whenever
// it wants it; a batch the socket could not take whole stays in c.batch
// with EPOLLOUT armed.
func (l *loop) flush(c *conn) {
	if l.ring != nil {
		l.ringFlush(c)
		return
	}
	progressed := false
	if c.batch == nil {
		c.batch, c.off = c.out.Take(), 0
		l.observe(c.batch)
	}
	for c.batch != nil {
		rest := c.batch[c.off:]
		n, errno := rawWrite(c.fd, rest)
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
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 && errno != unix.EAGAIN {
			c.out.Abort()
			c.batch = nil
			c.startClosing(fmt.Errorf("write: %w", errno), true, time.Now())
			l.remove(c)
			return
		}
		// The socket is full (a short write means the next would fail).
		c.off += n
		if n > 0 {
			c.out.Sent(n)
		}
		if !c.wantOut || progressed {
			c.stallSince = l.now()
			l.addTimer(c, c.stallSince+l.s.cfg.WriteTimeout)
		}
		c.wantOut = true
		l.drained(c)
		return
	}
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
		if l.s.pool != nil {
			l.s.pool.kick(c)
		}
		l.readLater(c)
	}
}

// recheck is a reactor-pool executor's request to look at c's reading
// again: it paused, or consumed input that had stopped reading.
func (l *loop) recheck(c *conn) {
	if c.removed {
		return
	}
	if c.inFull && !l.s.pool.full(c) {
		c.inFull = false
		l.readLater(c)
	}
	l.drained(c)
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

// remove closes c's socket and tells the session.
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
	peerSending := !c.rdHup && !c.eof && !c.rc.eof
	switch {
	case l.ring != nil:
		// Close with a FIN, not a reset: linger off the loop when the
		// server closes on its own and the farewell is out of the ring,
		// or at least drop what has arrived.
		lingered := peerSending && c.closeReason() != nil && !c.rc.sending && l.s.lingerAside(c.fd)
		if peerSending && !lingered {
			discardInput(c.fd)
		}
		l.ringClose(c)
	case peerSending && c.closeReason() != nil:
		l.linger(c.fd)
	default:
		unix.Close(c.fd)
	}
	l.conns[c.fd] = nil
	l.n--
	l.load.Add(-1)
	l.s.stats.Open.Add(-1)
	if l.s.pool != nil {
		l.s.pool.closed(c)
		return
	}
	c.in = nil
	c.sess.Closed(c.closeReason())
}

// quiesce is shutdown's first phase on this loop: stop accepting and
// reading. No Data runs here afterwards.
func (l *loop) quiesce() {
	l.quiet = true
	for _, fd := range l.listeners {
		if l.ring != nil {
			l.ringStopAccepting(fd)
		}
		unix.Close(fd)
	}
	l.listeners = nil
}

// markAll starts shutdown's second phase: every connection is marked
// closing with handler.ErrShutdown and its farewell queued after all it was
// sent. Every loop does this before any loop closes a socket, so no
// session's Closed (a chat LEAVE, say) can write to a connection ahead of
// its farewell.
func (l *loop) markAll(deadline time.Time) {
	for _, c := range l.conns {
		if c != nil {
			c.startClosing(handler.ErrShutdown, true, deadline)
		}
	}
}

// closeAll finishes shutdown's second phase: flush and close every
// connection, forcing the rest closed at deadline.
func (l *loop) closeAll(deadline time.Time) {
	l.stopping = true
	l.stopDeadline = deadline
	heap.Push(&l.timers, timer{at: l.clock(deadline), lfd: -1})
	for _, c := range l.conns {
		if c != nil {
			l.finish(c)
		}
	}
}

// accept takes the pending connections of listener lfd.
func (l *loop) accept(lfd int) {
	if !slices.Contains(l.listeners, lfd) {
		return // closed by quiesce earlier in this batch
	}
	for range acceptBatch {
		fd, remote, errno := rawAccept(lfd, &l.sa)
		if !l.accepted(lfd, fd, remote, errno) {
			return
		}
	}
}

// accepted handles the outcome of one accept on listener lfd: a new
// connection fd from remote, or errno. It reports whether the listener
// may be asked for another connection now.
func (l *loop) accepted(lfd, fd int, remote netip.AddrPort, errno unix.Errno) bool {
	switch errno {
	case 0:
	case unix.EAGAIN:
		return false
	case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
		l.s.stats.AcceptErrors.Add(1)
		l.overloaded(lfd, errno)
		return false
	default:
		l.s.stats.AcceptErrors.Add(1)
		if backoff.Retryable(errno) {
			return true // ECONNABORTED and the like: that one connection is gone
		}
		if l.ring == nil {
			l.ctl(unix.EPOLL_CTL_DEL, lfd, 0, tagListener)
		}
		l.s.fail(fmt.Errorf("accept: %w", errno))
		return false
	}
	if l.acceptBo.Reset() || l.s.refusing.Load() && l.s.refusing.Swap(false) {
		l.s.cfg.Logger.Info("reactor: accepting again")
	}
	if limited, ok := l.s.admit(fd, remote); ok {
		l.s.place(l, fd, remote, limited)
	}
	return true
}

// overloaded handles running out of file descriptors (or memory) in
// accept: refuse one pending connection with the spare descriptor, or if
// that is impossible stop watching the listener for a backoff delay, since
// a level-triggered listener with a pending connection would spin.
func (l *loop) overloaded(lfd int, errno unix.Errno) {
	if l.s.refuse(lfd, &l.sa) {
		if l.ring != nil {
			l.ringAccept(lfd)
		}
		return
	}
	wait, first := l.acceptBo.Fail()
	if first {
		l.s.cfg.Logger.Warn("reactor: accept failing; backing off", "err", errno)
	}
	if l.ring == nil {
		l.ctl(unix.EPOLL_CTL_MOD, lfd, 0, tagListener)
	}
	heap.Push(&l.timers, timer{at: l.now() + wait, lfd: lfd})
}

// addTimer arranges for c to be looked at by at, unless an earlier timer
// already will.
func (l *loop) addTimer(c *conn, at time.Duration) {
	if c.timerAt != 0 && c.timerAt <= at {
		return
	}
	c.timerAt = at
	heap.Push(&l.timers, timer{at: at, c: c, gen: c.gen})
}

func (l *loop) runTimers() {
	now := l.now()
	for len(l.timers) > 0 && l.timers[0].at <= now {
		t := heap.Pop(&l.timers).(timer)
		switch {
		case t.c != nil:
			if !t.c.removed && t.c.gen == t.gen && t.c.timerAt == t.at {
				t.c.timerAt = 0
				l.expire(t.c, now)
			}
		case t.lfd >= 0:
			if !slices.Contains(l.listeners, t.lfd) {
				break
			}
			if l.ring != nil {
				l.ringAccept(t.lfd)
			} else {
				l.ctl(unix.EPOLL_CTL_MOD, t.lfd, unix.EPOLLIN, tagListener)
			}
		case t.linger > 0:
			if gen, ok := l.lingering[t.linger-1]; ok && gen == t.gen {
				l.endLinger(t.linger - 1)
			}
		default: // the shutdown deadline
			for _, c := range l.conns {
				if c != nil {
					l.cut = true
					l.remove(c)
				}
			}
			for fd := range l.lingering {
				l.endLinger(fd)
			}
		}
	}
}

// expire checks c's deadlines: the close deadline while finishing, the
// write timeout while the socket is full, and the frame timeout while the
// session has input left unconsumed.
func (l *loop) expire(c *conn, now time.Duration) {
	if !c.finishing && l.frameExpired(c, now) {
		l.s.stats.FrameTimeouts.Add(1)
		c.startClosing(handler.ErrFrameTimeout, true, time.Now().Add(l.s.cfg.DrainTimeout))
		l.finish(c)
		return
	}
	if c.finishing {
		at := l.clock(c.closeDeadline())
		if now >= at {
			// At the shutdown deadline this timer and the loop's may fire
			// in either order: either one reports the drain cut short.
			l.cut = l.cut || l.stopping && at >= l.clock(l.stopDeadline)
			l.remove(c)
			return
		}
		l.addTimer(c, at)
	}
	if c.wantOut {
		at := c.stallSince + l.s.cfg.WriteTimeout
		if now >= at {
			if c.startClosing(handler.ErrWriteTimeout, true, time.Now()) {
				l.s.stats.WriteTimeouts.Add(1) // not when a farewell is what stalled
			}
			l.remove(c)
			return
		}
		l.addTimer(c, at)
	}
}

// timer is a loop timer: for a connection (c), re-arming a listener after
// a backoff (lfd >= 0), the end of a lingering close (linger > 0), or the
// shutdown deadline (none of these).
type timer struct {
	at     time.Duration
	c      *conn
	gen    int32 // c's generation, or the linger's
	lfd    int
	linger int // a lingering socket's fd + 1, 0 for other timers
}

// linger ends a connection the server closed while the peer may still be
// sending: the write side is shut (a FIN after the farewell), and the
// socket stays open, dropping input, until the peer closes or CloseLinger
// passes. Linux would answer a close with unread input, or input arriving
// after it, with a reset that can cost the peer its farewell.
func (l *loop) linger(fd int) {
	unix.Shutdown(fd, unix.SHUT_WR)
	if l.lingering == nil {
		l.lingering = map[int]int32{}
	}
	l.lingerGen++
	l.lingering[fd] = l.lingerGen
	heap.Push(&l.timers, timer{at: l.now() + outbuf.CloseLinger, gen: l.lingerGen, lfd: -1, linger: fd + 1})
	l.dropInput(fd)
}

// dropInput reads and drops what a lingering socket holds, and closes it
// once the peer has closed (or the socket failed).
func (l *loop) dropInput(fd int) {
	for {
		n, errno := rawRead(fd, l.buf)
		if n > 0 {
			continue
		}
		if errno != unix.EAGAIN {
			l.endLinger(fd)
		}
		return
	}
}

// endLinger closes a lingering socket.
func (l *loop) endLinger(fd int) {
	delete(l.lingering, fd)
	unix.Close(fd)
}

type timerHeap []timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = timer{}
	*h = old[:len(old)-1]
	return t
}

// observe reports a batch taken for writing to Options.ObserveQueue.
func (l *loop) observe(batch []byte) {
	if f := l.s.cfg.ObserveQueue; f != nil && batch != nil {
		f(len(batch))
	}
}

// trackPartial records, after a Data call that consumed used bytes and
// left rest, when c's unconsumed input began: input left after a call that
// consumed something is a new frame, begun in the bytes just passed. It
// reports whether a new partial frame began, whose timer must be armed.
// The loop or a reactor-pool worker calls it, whichever ran Data.
func (s *Server) trackPartial(c *conn, used, rest int) bool {
	if s.cfg.FrameTimeout <= 0 {
		return false
	}
	switch {
	case rest == 0:
		if c.partialAt.Load() != 0 {
			c.partialAt.Store(0)
		}
		return false
	case used > 0 || c.partialAt.Load() == 0:
		c.partialAt.Store(max(1, int64(c.l.now())))
		return true
	}
	return false
}

// armFrame arms the frame timer of c's current partial frame.
func (l *loop) armFrame(c *conn) {
	if p := c.partialAt.Load(); p != 0 {
		l.addTimer(c, time.Duration(p)+l.s.cfg.FrameTimeout)
	}
}

// frameExpired reports whether c's partial frame has outlived the frame
// timeout, re-arming the timer if it has not yet.
func (l *loop) frameExpired(c *conn, now time.Duration) bool {
	p := c.partialAt.Load()
	if p == 0 || l.s.cfg.FrameTimeout <= 0 {
		return false
	}
	at := time.Duration(p) + l.s.cfg.FrameTimeout
	if now >= at {
		return true
	}
	l.addTimer(c, at)
	return false
}
