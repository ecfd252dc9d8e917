package reactor

import (
	"container/heap"
	"time"

	"github.com/tcplab/tcplab/handler"
)

// This file is the loop core's timers: a heap of deadlines per loop, for
// a connection (its write timeout, its frame timeout, its close
// deadline), a listener's accept backoff, and the shutdown deadline. The
// loop's wait ends at the earliest.

// timer is a loop timer: for a connection (c), accepting on a listener
// again after a backoff (lfd >= 0), or the shutdown deadline (lfd -1).
type timer struct {
	at  time.Duration
	c   *conn
	gen int32 // c's generation
	lfd int
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

// timeout is the wait's timeout in ms: -1 without timers.
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
			if l.listening(t.lfd) {
				l.drv.accepting(t.lfd, true)
			}
		default:
			l.deadlinePassed()
		}
	}
}

// expire checks c's deadlines: the close deadline while finishing, the
// write timeout while output is held up, the frame timeout while the
// session has input left unconsumed (not while input waits for an
// offloaded function: the wait is not the peer's), and the end of a pause
// of reading.
func (l *loop) expire(c *conn, now time.Duration) {
	if c.tls != nil && l.s.tls.expired(c, now) {
		return // the TLS handshake's deadline passed
	}
	if !c.finishing && !c.offloading && !c.waiting && l.frameExpired(c, now) {
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
	if c.resumeAt != 0 && !c.finishing {
		if now < c.resumeAt {
			l.addTimer(c, c.resumeAt)
			return
		}
		l.resumeReading(c)
	}
}

// trackPartial records, after a Data call that consumed used bytes and
// left rest, when c's unconsumed input began: input left after a call that
// consumed something is a new frame, begun in the bytes just passed. It
// reports whether a new partial frame began, whose timer must be armed.
// Whoever ran Data calls it: the loop, or a reactor-pool worker.
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

// frameExpired reports whether c's partial frame (or, under TLS, an
// incomplete record) has outlived the frame timeout, re-arming the timer
// if it has not yet.
func (l *loop) frameExpired(c *conn, now time.Duration) bool {
	p := c.partialAt.Load()
	if c.tls != nil {
		p = c.tls.frameStart(p)
	}
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
