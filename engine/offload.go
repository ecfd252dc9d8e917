package engine

import (
	"context"
	"sync"
	"time"

	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/drain"
	"github.com/tcplab/tcplab/internal/serving"
)

// The blocking models run what a session offloads (handler.Offload) in
// place: the connection's own goroutine (or thread) runs it right after
// the event that asked, before it reads again, so Data waits for it and
// the input behind it waits in the socket and the read buffer. Only
// shutdown needs to know: it waits for the functions until its deadline,
// and past it no longer waits for the connections running one (inflight).

var _ handler.Offloader = (*streamConn)(nil)

// Offload keeps fn to run once the current event has returned
// (handler.Offload): the goroutine that ran the event runs it.
func (c *streamConn) Offload(fn func()) { c.pending = serving.AddOffloaded(c.pending, fn) }

// takePending returns what the session offloaded in the event that just
// returned, nil if nothing, and counts it as running from now on.
func (c *streamConn) takePending() func() {
	fn := c.pending
	if fn != nil {
		c.pending = nil
		c.set.running.add(-1, 1)
	}
	return fn
}

// runOffloaded runs fn, which takePending returned, in place; a panic
// closes the connection.
func (c *streamConn) runOffloaded(fn func()) {
	defer c.set.running.add(1, -1)
	cfg := &c.set.cfg
	if err := c.set.stats.RunOffloaded(fn, cfg.Logger, c.RemoteAddr()); err != nil {
		c.closeWith(err, true, time.Now().Add(cfg.DrainTimeout))
	}
}

// runPending runs in place whatever the session offloaded in the event
// that just returned.
func (c *streamConn) runPending() {
	if fn := c.takePending(); fn != nil {
		c.runOffloaded(fn)
	}
}

// inflight counts what a streamSet's shutdown waits for: the goroutines
// serving connections, less those running an offloaded function, and the
// offloaded functions running. Past the deadline shutdown closes every
// socket, which ends the first soon, but it cannot end the second.
type inflight struct {
	mu    sync.Mutex
	conns int
	fns   int
	// changed, while someone waits, is closed (and cleared) at the next
	// decrement.
	changed chan struct{}
}

// add changes the counts by conns and fns.
func (f *inflight) add(conns, fns int) {
	f.mu.Lock()
	f.conns += conns
	f.fns += fns
	if (conns < 0 || fns < 0) && f.changed != nil {
		close(f.changed)
		f.changed = nil
	}
	f.mu.Unlock()
}

// waitFor waits until done holds for the counts, or until deadline (zero:
// none) or ctx's end, and reports whether done came to hold.
func (f *inflight) waitFor(ctx context.Context, deadline time.Time, done func(conns, fns int) bool) bool {
	for {
		f.mu.Lock()
		if done(f.conns, f.fns) {
			f.mu.Unlock()
			return true
		}
		if f.changed == nil {
			f.changed = make(chan struct{})
		}
		changed := f.changed
		f.mu.Unlock()
		if deadline.IsZero() {
			<-changed
		} else if !drain.Wait(ctx, changed, deadline) {
			return false
		}
	}
}

// busy reports whether an offloaded function is running.
func (f *inflight) busy() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fns > 0
}

// What streamSet.shutdown waits for.
func noFns(_, fns int) bool     { return fns == 0 }
func idle(conns, fns int) bool  { return conns == 0 && fns == 0 }
func noConns(conns, _ int) bool { return conns == 0 }

// awaitGoroutines calls wait, which returns once goroutines of the model
// have ended (its accept loops, its workers), after the set's shutdown.
// While an offloaded function still runs, one of them may be running it,
// so it then waits only until deadline (or ctx's end), and reports false
// if it stopped waiting.
func (s *streamSet) awaitGoroutines(ctx context.Context, deadline time.Time, wait func()) bool {
	if !s.running.busy() {
		wait()
		return true
	}
	done := make(chan struct{})
	go func() {
		wait()
		close(done)
	}()
	return drain.Wait(ctx, done, deadline)
}
