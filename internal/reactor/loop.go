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
)

// This file and conn_io.go and timers.go are the loop core: one event
// loop, whatever its kernel interface. It runs tasks posted from other
// goroutines, timers, the delivery of input to the dispatcher, output and
// its backpressure, the close protocol and the shutdown phases, and
// drives an I/O driver (driver.go) for everything that touches the
// kernel. It has no knowledge of epoll or io_uring, and none of where
// the handler's calls run (dispatch.go).

const (
	readBufSize = 64 << 10 // the most bytes one Data call gets fresh
	acceptBatch = 64       // accepts per listener event, so a flood of SYNs cannot starve the loop
	keepInCap   = 4 << 10  // a larger idle inbound buffer is released
)

// taskKind says what a task asks of a loop.
type taskKind uint8

const (
	taskAdd      taskKind = iota // register c, accepted by another loop
	taskFlush                    // c's outbound buffer has data the loop was not told about
	taskClose                    // c started closing on another goroutine
	taskInput                    // the dispatcher consumed input or paused c; recheck reading
	taskFrame                    // the dispatcher left a new partial frame; arm its timer
	taskPause                    // the session asked for a pause of reading (reactor-pool)
	taskQuiesce                  // shutdown phase 1: stop accepting and reading, then ack
	taskMarkAll                  // shutdown phase 2a: mark every connection closing, queue its farewell, then ack
	taskCloseAll                 // shutdown phase 2b: close every connection by deadline
	taskCall                     // run fn on the loop, then ack (if ack is set)
	taskReturned                 // a function c's session offloaded has returned
)

// task is a message to a loop from any goroutine.
type task struct {
	kind     taskKind
	c        *conn
	ack      chan<- struct{}
	deadline time.Time
	fn       func()
}

// loop is one event loop: a driver served by one goroutine locked to its
// OS thread. It owns its connections' sockets; other goroutines reach it
// only through post.
type loop struct {
	s    *Server
	drv  driver
	disp dispatcher

	conns []*conn // by fd
	n     int     // connections registered
	// ready holds connections to read on this pass: their socket may
	// have more bytes than the last read took (edge-triggered epoll will
	// not report them again), or reading them resumed.
	ready, readySpare []*conn
	nextGen           int32
	// listeners are the listening sockets this loop accepts on.
	listeners []int
	epoch     time.Time
	passNow   time.Duration // the loop clock when this pass's wait returned
	yielded   time.Duration // loop clock at the last yield to the scheduler
	moved     keeper        // when the loop last moved bytes (wait.go)
	timers    timerHeap
	sa        unix.RawSockaddrAny // scratch for accept and getsockname
	acceptBo  backoff.Backoff

	// waiting holds the input of connections whose Data waits for an
	// offloaded function (conn.waiting); nil until one does.
	waiting map[*conn][]byte

	quiet        bool // shutdown phase 1 done: no accepting, no reading
	stopping     bool // shutdown phase 2: exit once every connection is gone
	expired      bool // the shutdown deadline passed: what is left closes at once
	cut          bool // connections were closed at the shutdown deadline
	stopDeadline time.Time

	// in and out count bytes on the loop (the driver counts in, as it
	// receives); run publishes them to bytesIn and bytesOut once a pass,
	// so the hot path has no atomic add.
	in, out uint64

	_ [64]byte // keep the fields other goroutines write off the loop's lines

	// load counts connections placed on this loop (least-conns).
	load atomic.Int64
	// offloads counts the functions its connections' sessions offloaded
	// that have not returned (or whose return the loop has not handled):
	// a stopping loop waits for them until the shutdown deadline.
	offloads atomic.Int32

	qmu    sync.Mutex
	q      []task
	qspare []task
	ended  bool // the loop has stopped: post refuses
	// queued is set while q is not empty.
	queued atomic.Bool
	// sleeping is set while the loop is (about to be) waiting with a
	// timeout; a producer that clears it wakes the driver. Posts that
	// find it clear cost no system call, so a burst of writes to this
	// loop's connections wakes it at most once.
	sleeping atomic.Bool

	_ [64]byte

	bytesIn, bytesOut atomic.Uint64
}

// newLoop makes a loop of s, with the driver s's model runs.
func newLoop(s *Server) (*loop, error) {
	l := &loop{s: s, disp: s.disp, epoch: time.Now(), moved: keeper{at: -keepFor}}
	var err error
	if s.model == Uring {
		l.drv, err = newUringDriver(l)
	} else {
		l.drv, err = newEpollDriver(l)
	}
	if err != nil {
		return nil, err
	}
	return l, nil
}

// post queues t for the loop and wakes it if it sleeps. Once the loop has
// ended it queues nothing and reports false: a caller that must have t
// handled (the return of an offloaded function) handles it itself.
func (l *loop) post(t task) bool {
	l.qmu.Lock()
	if l.ended {
		l.qmu.Unlock()
		return false
	}
	l.q = append(l.q, t)
	l.queued.Store(true)
	// Wake under qmu: the loop cannot have ended meanwhile, so its driver
	// (and the wake-up descriptor wake writes to, which release closes
	// and the kernel may hand out again) is still there.
	if l.sleeping.Load() && l.sleeping.CompareAndSwap(true, false) {
		l.drv.wake()
	}
	l.qmu.Unlock()
	return true
}

// run is the loop's goroutine. It returns once shutdown has closed every
// connection, the functions they offloaded have returned (or the
// shutdown deadline has passed), and the driver has finished.
func (l *loop) run(done func()) {
	defer done()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := l.drv.start(); err != nil {
		l.s.fail(err)
	}
	for !l.stopping || l.n > 0 || l.offloads.Load() > 0 && !l.expired || !l.drv.stop() {
		l.maybeYield(l.passNow)
		l.drv.wait(l.sleepTimeout(len(l.ready) > 0))
		l.sleeping.Store(false)
		l.passNow = l.now()
		l.drv.handle()
		l.endPass()
	}
	l.end()
	l.publish()
}

// end marks the loop ended and hands the returns of offloaded functions
// still queued to the dispatcher, as their workers do from now on.
func (l *loop) end() {
	l.qmu.Lock()
	l.ended = true
	left := l.q
	l.q = nil
	l.qmu.Unlock()
	for _, t := range left {
		if t.kind == taskReturned {
			l.disp.offloaded(t.c, true)
		}
	}
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
	l.moved.saw(l.in, l.out, l.passNow)
	l.publish()
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
		l.flush(c)
	case taskClose:
		l.finish(c)
	case taskInput:
		l.recheck(c)
	case taskFrame:
		if !c.removed {
			l.armFrame(c)
		}
	case taskPause:
		l.pauseReading(c)
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
		if t.ack != nil {
			t.ack <- struct{}{}
		}
	case taskReturned:
		l.offloadDone(c)
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
	if err := l.drv.attach(c); err != nil {
		l.s.cfg.Logger.Warn("reactor: dropping connection", "err", err)
		unix.Close(c.fd)
		l.load.Add(-1)
		l.s.releaseSlot(c)
		return
	}
	l.conns[c.fd] = c
	l.n++
	if c.tls == nil {
		l.s.stats.Accepted.Add(1) // TLS: once the handshake is done
	}
	l.s.stats.Open.Add(1)
	l.disp.open(c)
	if l.stopping && !c.removed {
		c.startClosing(handler.ErrShutdown, true, l.stopDeadline)
		l.finish(c)
	}
}

// listening reports whether lfd is one of the loop's listeners (quiesce
// closes them).
func (l *loop) listening(lfd int) bool { return slices.Contains(l.listeners, lfd) }

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
		l.drv.accepting(lfd, false)
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
// that is impossible stop accepting on the listener for a backoff delay,
// since a level-triggered listener with a pending connection would spin.
func (l *loop) overloaded(lfd int, errno unix.Errno) {
	if l.s.refuse(lfd, &l.sa) {
		l.drv.accepting(lfd, true) // io_uring: the failed accept ended
		return
	}
	wait, first := l.acceptBo.Fail()
	if first {
		l.s.cfg.Logger.Warn("reactor: accept failing; backing off", "err", errno)
	}
	l.drv.accepting(lfd, false)
	heap.Push(&l.timers, timer{at: l.now() + wait, lfd: lfd})
}

// quiesce is shutdown's first phase on this loop: stop accepting and
// reading. No Data runs here afterwards.
func (l *loop) quiesce() {
	l.quiet = true
	for _, fd := range l.listeners {
		l.drv.accepting(fd, false)
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

// deadlinePassed closes every connection left at the shutdown deadline,
// and stops waiting for the functions they offloaded.
func (l *loop) deadlinePassed() {
	l.expired = true
	l.cut = l.cut || l.offloads.Load() > 0
	for _, c := range l.conns {
		if c != nil {
			l.cut = true
			l.remove(c)
		}
	}
}
