package reactor

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
)

// This file holds what only the tests use of the loops' internals.

// wakeCounter wraps a loop's driver and counts its wake-ups (eventfd
// writes), and its waits by timeout. Install it with countWakeups before
// the server serves.
type wakeCounter struct {
	driver
	n atomic.Uint64
	// waiting is set while the loop waits for events with a timeout other
	// than 0: asleep, or about to be.
	waiting atomic.Bool
	// sliced counts waits with a timeout of 1 to 9 ms, unbounded those
	// without a limit.
	sliced, unbounded atomic.Uint64
}

func (w *wakeCounter) wake() {
	w.n.Add(1)
	w.driver.wake()
}

func (w *wakeCounter) wait(timeout int) {
	switch {
	case timeout < 0:
		w.unbounded.Add(1)
	case timeout > 0 && timeout < 10:
		w.sliced.Add(1)
	}
	if timeout != 0 {
		w.waiting.Store(true)
		defer w.waiting.Store(false)
	}
	w.driver.wait(timeout)
}

// countWakeups wraps l's driver in a wakeCounter, before l runs.
func countWakeups(l *loop) *wakeCounter {
	w := &wakeCounter{driver: l.drv}
	l.drv = w
	return w
}

// ringOf returns l's io_uring driver.
func ringOf(l *loop) *uringDriver { return l.drv.(*uringDriver) }

// rearmAccepts cancels and re-arms the loop's accepts. The kernel reads
// RLIMIT_NOFILE when an accept is submitted, so this makes a lowered
// limit apply to a multishot accept armed before. Run it on the loop.
func (d *uringDriver) rearmAccepts() {
	for _, lfd := range d.armed {
		d.cancel(userData(opAccept, lfd), lfd)
	}
	if _, err := d.r.Enter(0, 0); err != nil {
		d.l.s.fail(err)
	}
	d.complete()
}

// logCounter is a slog.Handler that counts records by message, at every
// level: the io_uring driver says at debug level when it runs short of a
// resource.
type logCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func newLogCounter() *logCounter { return &logCounter{n: map[string]int{}} }

func (h *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCounter) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logCounter) WithGroup(string) slog.Handler            { return h }

func (h *logCounter) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.n[r.Message]++
	h.mu.Unlock()
	return nil
}

// count returns how many records said msg.
func (h *logCounter) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[msg]
}
