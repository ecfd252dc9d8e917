package reactor

import (
	"context"
	"sync"
	"time"

	"github.com/tcplab/tcplab/internal/drain"
)

// workers runs functions that must not run on a loop because they may
// block: the functions sessions offload (handler.Offload), and any other
// step a loop hands off (a TLS handshake, say). At most max run at once,
// each on a goroutine started when one is needed and then kept, idle,
// until stop; past max, functions wait in a FIFO queue. Until the first
// submit it has no goroutine and costs nothing.
//
// It runs what it is given and nothing more: a caller that needs to know
// when its function has run, or to recover a panic, wraps the function.
type workers struct {
	max int

	mu      sync.Mutex
	work    sync.Cond // a function was queued, or stop
	exited  sync.Cond // an idle goroutine ended, after stop
	queue   []func()
	head    int
	started int // goroutines alive
	idle    int // of them, waiting for work and not yet signalled
	busy    int // functions queued or running
	// drained, while someone waits for busy to reach 0, is closed when
	// it does.
	drained  chan struct{}
	stopping bool
}

func newWorkers(max int) *workers {
	w := &workers{max: max}
	w.work.L = &w.mu
	w.exited.L = &w.mu
	return w
}

// submit queues fn to run on a worker: an idle one, a new one if fewer
// than max exist, or else the first to finish what it runs. It never
// blocks, and may be called after stop (fn then still runs).
func (w *workers) submit(fn func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.queue = append(w.queue, fn)
	w.busy++
	switch {
	case w.idle > 0:
		w.idle-- // this one is taken: another submit must not count on it
		w.work.Signal()
	case w.started < w.max:
		w.started++
		go w.run()
	}
}

// run is a worker goroutine: it runs queued functions, waits while there
// are none, and ends once stop has been called and the queue is empty.
func (w *workers) run() {
	w.mu.Lock()
	for {
		for w.head == len(w.queue) {
			if w.stopping {
				w.started--
				w.exited.Broadcast()
				w.mu.Unlock()
				return
			}
			w.idle++
			w.work.Wait() // whoever signals takes idle back
		}
		fn := w.queue[w.head]
		w.queue[w.head] = nil
		if w.head++; w.head == len(w.queue) {
			w.queue, w.head = w.queue[:0], 0
		}
		w.mu.Unlock()
		fn()
		w.mu.Lock()
		if w.busy--; w.busy == 0 && w.drained != nil {
			close(w.drained)
			w.drained = nil
		}
	}
}

// wait waits until no function is queued or running, or until deadline
// or ctx's end, and reports whether none was.
func (w *workers) wait(ctx context.Context, deadline time.Time) bool {
	w.mu.Lock()
	if w.busy == 0 {
		w.mu.Unlock()
		return true
	}
	if w.drained == nil {
		w.drained = make(chan struct{})
	}
	done := w.drained
	w.mu.Unlock()
	return drain.Wait(ctx, done, deadline)
}

// stop ends the idle workers and waits for them; a worker still running a
// function ends after it, and after the rest of the queue.
func (w *workers) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopping = true
	w.idle = 0
	w.work.Broadcast()
	for w.started > w.busy {
		w.exited.Wait()
	}
}
