package reactor

import (
	"sync"
	"time"

	"github.com/tcplab/tcplab/handler"
)

// maxRunCalls is how many Data calls one connection gets per turn on a
// worker before it goes to the back of the queue, so a busy connection
// cannot hold a worker while others wait.
const maxRunCalls = 4

// execState is a reactor-pool connection's executor: the handler events
// waiting to run on a worker, kept in order and run by at most one worker
// at a time. The pool allocates it when the connection opens (conn.ex);
// it is guarded by the conn's mu.
type execState struct {
	scheduled bool // in the pool's queue or running on a worker
	opened    bool // Open has returned
	gone      bool // the socket is closed: Closed is due
	done      bool // Closed has run
	eof       bool // the peer finished (or failed) after the bytes in in
	eofErr    error
	stalled   bool   // the loop stopped reading because in was full: tell it when it is not
	paused    bool   // the session asked for a pause of reading: no Data until the loop ends it
	in        []byte // bytes read by the loop and not yet consumed
	seen      int    // bytes at the front of in that Data has already seen

	// offloading is set while a function the session offloaded has not
	// returned: the executor runs nothing for c (input waits in in; the
	// loop stops reading once a Data call's worth has come).
	offloading bool
}

// pool is reactor-pool's dispatcher: the loops read and write, and a fixed
// set of workers run Open, Data and Closed. A connection is in the queue
// at most once, so its events never run concurrently and keep their
// order.
type pool struct {
	s        *Server
	workers  int
	mu       sync.Mutex
	work     sync.Cond // a connection was queued, or stop
	idle     sync.Cond // busy reached zero
	queue    []*conn
	head     int
	busy     int // connections queued or running
	stopping bool
	wg       sync.WaitGroup
}

func newPool(s *Server, workers int) *pool {
	p := &pool{s: s, workers: workers}
	p.work.L = &p.mu
	p.idle.L = &p.mu
	return p
}

// start runs the workers.
func (p *pool) start() {
	for range p.workers {
		p.wg.Go(p.worker)
	}
}

func (p *pool) worker() {
	for {
		p.mu.Lock()
		for p.head == len(p.queue) && !p.stopping {
			p.work.Wait()
		}
		if p.head == len(p.queue) {
			p.mu.Unlock()
			return
		}
		c := p.queue[p.head]
		p.queue[p.head] = nil
		if p.head++; p.head == len(p.queue) {
			p.queue, p.head = p.queue[:0], 0
		}
		p.mu.Unlock()

		again := p.run(c)

		p.mu.Lock()
		if again {
			p.queue = append(p.queue, c)
			p.work.Signal()
		} else if p.busy--; p.busy == 0 {
			p.idle.Broadcast()
		}
		p.mu.Unlock()
	}
}

// schedule queues c. The caller holds c.mu and has seen it unscheduled.
func (p *pool) schedule(c *conn) {
	c.ex.scheduled = true
	p.mu.Lock()
	p.queue = append(p.queue, c)
	p.busy++
	p.mu.Unlock()
	p.work.Signal()
}

// wake schedules c unless it is queued, running, finished, or waiting for
// an offloaded function. The caller holds c.mu.
func (p *pool) wake(c *conn) {
	if !c.ex.scheduled && !c.ex.done && !c.ex.offloading {
		p.schedule(c)
	}
}

// open is called by the loop for a new connection: Open runs first.
func (p *pool) open(c *conn) {
	c.ex = &execState{}
	c.mu.Lock()
	p.wake(c)
	c.mu.Unlock()
}

// input appends bytes the loop read and reports whether enough are
// waiting that the loop should stop reading (one Data call's worth).
func (p *pool) input(c *conn, b []byte) (full bool) {
	c.mu.Lock()
	c.ex.in = append(c.ex.in, b...)
	full = len(c.ex.in)-c.ex.seen >= p.s.chunk
	c.ex.stalled = full
	p.wake(c)
	c.mu.Unlock()
	return full
}

// holding reports whether a Data call's worth of bytes still waits.
func (p *pool) holding(c *conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ex.in)-c.ex.seen >= p.s.chunk
}

// ended records that the peer finished (reason nil) or failed after the
// bytes read so far. The executor closes the connection once the session
// has seen them.
func (p *pool) ended(c *conn, reason error) {
	c.mu.Lock()
	c.ex.eof, c.ex.eofErr = true, reason
	p.wake(c)
	c.mu.Unlock()
}

// resumed runs c's executor again after backpressure lifted.
func (p *pool) resumed(c *conn) {
	c.mu.Lock()
	if len(c.ex.in) > c.ex.seen || c.ex.eof {
		p.wake(c)
	}
	c.mu.Unlock()
}

// unpaused is called by the loop when the pause the session asked for
// ends: Data runs again, first on what it left unconsumed.
func (p *pool) unpaused(c *conn) {
	c.mu.Lock()
	c.ex.paused = false
	p.wake(c)
	c.mu.Unlock()
}

// closed is called by the loop once c's socket is closed: Closed is due.
func (p *pool) closed(c *conn) {
	c.mu.Lock()
	c.ex.gone = true
	p.wake(c)
	c.mu.Unlock()
}

// run executes c's due events on this worker: Open, then Data while bytes
// wait and nothing stops it, then the close that follows end of input, and
// Closed once the socket is gone. It reports whether c should go to the
// back of the queue with work left.
func (p *pool) run(c *conn) (again bool) {
	s := p.s
	ex := c.ex
	c.mu.Lock()
	defer c.mu.Unlock()
	for calls := 0; ; {
		fresh := len(ex.in) - ex.seen
		switch {
		case !ex.opened:
			c.mu.Unlock()
			sess := s.h.Open(c)
			c.mu.Lock()
			c.sess, ex.opened = sess, true
			p.offload(c)

		case ex.offloading:
			ex.scheduled = false // offloaded wakes c
			return false

		case ex.gone:
			ex.done, ex.scheduled = true, false
			ex.in = nil
			sess, reason := c.sess, c.closer.Reason()
			c.mu.Unlock()
			sess.Closed(reason)
			c.mu.Lock()
			p.offload(c)
			return false

		case fresh > 0 && !ex.paused && !c.closer.Sealed() && !c.paused.Load() && !s.quiet.Load():
			if calls == maxRunCalls {
				return true
			}
			calls++
			p.deliver(c, fresh)

		case ex.eof && fresh == 0 && !ex.paused && !c.closer.Sealed():
			reason := ex.eofErr
			c.mu.Unlock()
			c.closeWith(reason, false, time.Now().Add(s.cfg.DrainTimeout))
			c.mu.Lock()

		default:
			ex.scheduled = false
			return false
		}
	}
}

// deliver runs one Data call with what the session left unconsumed plus
// up to one chunk of fresh bytes. Called with c.mu held; it releases it
// during the call.
func (p *pool) deliver(c *conn, fresh int) {
	s := p.s
	ex := c.ex
	n := ex.seen + min(fresh, s.chunk)
	view := ex.in[:n] // the loop only appends, never moves these bytes
	sess := c.sess
	c.mu.Unlock()
	used, err := sess.Data(view)
	if err == nil {
		err = handler.CheckConsumed(used, n)
	}
	pause := c.pause.Asked()
	over := c.out.Len() > s.highWater
	c.mu.Lock()
	p.offload(c)
	if err != nil {
		c.mu.Unlock()
		c.closeWith(err, false, time.Now().Add(s.cfg.DrainTimeout))
		c.mu.Lock()
		return
	}
	ex.in = ex.in[:copy(ex.in, ex.in[used:])]
	ex.seen = n - used
	if ex.offloading {
		ex.seen = 0 // the session stopped at what it offloaded: show it the rest again after
	}
	if s.trackPartial(c, used, ex.seen) {
		c.l.post(task{kind: taskFrame, c: c})
	}
	if len(ex.in) == 0 && cap(ex.in) > keepInCap {
		ex.in = nil
	}
	if pause {
		// No more Data until the loop ends the pause (unpaused); then the
		// session sees what it left again, as after an offload. It waits
		// for that, so the inbound limit waits too.
		ex.paused = true
		ex.seen = 0
		c.l.post(task{kind: taskPause, c: c})
	} else if ex.seen > s.cfg.MaxInbound {
		c.mu.Unlock()
		c.closeWith(handler.ErrInputTooLarge, true, time.Now().Add(s.cfg.DrainTimeout))
		c.mu.Lock()
		return
	}
	recheck := ex.stalled && len(ex.in)-ex.seen < s.chunk
	if recheck {
		ex.stalled = false
	}
	if over && !c.paused.Load() {
		c.paused.Store(true)
		recheck = true
	}
	if recheck {
		c.l.post(task{kind: taskInput, c: c})
	}
}

// offload starts what c's session offloaded in the event that just ran
// on this worker, if anything, and holds c's events until it returns.
// The caller holds c.mu.
func (p *pool) offload(c *conn) {
	if c.pending != nil {
		c.ex.offloading = true
		c.l.offload(c)
	}
}

// offloaded lets c's events go on after its offloaded function returned:
// Data on the input that waited, the close after its end, or Closed. Once
// the loop has ended (late) the workers may have stopped, and only
// Closed is left to run: the caller runs it.
func (p *pool) offloaded(c *conn, late bool) {
	c.mu.Lock()
	ex := c.ex
	ex.offloading = false
	if !late {
		p.wake(c)
		c.mu.Unlock()
		return
	}
	due := ex.gone && !ex.done
	ex.done = true
	sess := c.sess
	c.mu.Unlock()
	if due {
		sess.Closed(c.closer.Reason())
		runLate(c)
	}
}

// quiesce is shutdown's first phase for the workers: no Data starts from
// now on, and quiesce returns once every queued or running connection has
// finished its turn.
func (p *pool) quiesce() {
	p.s.quiet.Store(true)
	p.mu.Lock()
	for p.busy > 0 {
		p.idle.Wait()
	}
	p.mu.Unlock()
}

// stop stops the workers once the queue is empty and waits for them.
func (p *pool) stop() {
	p.mu.Lock()
	p.stopping = true
	p.work.Broadcast()
	p.mu.Unlock()
	p.wg.Wait()
}

var _ dispatcher = (*pool)(nil)
