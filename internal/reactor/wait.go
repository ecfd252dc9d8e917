package reactor

import (
	"runtime"
	"time"
)

// This file is the loop core's wait path: how long a loop waits for
// events, and when it yields to the Go scheduler. Both exist for the Go
// runtime's monitor thread (sysmon), which looks at every P about every
// 10 ms while any P is busy:
//
//   - A goroutine found on the same scheduling tick for 10 ms is
//     preempted; if it is in a system call, its P is taken away.
//   - A P found in the same system call for 10 ms (with an idle P to
//     spare, as the reactor arranges) is taken away too.
//
// Taking a P away costs more than the hand-off: sysmon then goes back to
// polling every 20 µs for a millisecond, doubling its sleep only after
// that, about 60 wake-ups before it rests at 10 ms again; and a loop whose
// P was taken while every P went idle wakes sysmon from its deep sleep
// when its wait returns, with the same effect. On a loop that sleeps for
// more than 10 ms between bursts of work, that was about 60 extra thread
// wake-ups per burst, most of them landing while the loop worked the
// burst (docs/benchmarks.md, the open-loop benchmark).
//
// So a loop that moved bytes in the last keepFor never lets either
// happen: it yields at least every yieldEvery while it works, and it
// waits in slices that end by keepWait after its last yield, so every
// wait is shorter than 10 ms and every pass of sysmon finds it on a new
// tick. That costs a timed-out wait and a yield about every 8 ms of
// silence. A loop idle for longer than keepFor waits without a limit, as
// before: an idle server costs nothing, and the first burst after the
// silence pays for sysmon's wake-ups once.

// yieldEvery is how often a busy loop yields to the Go scheduler. A loop
// goroutine never blocks in the scheduler (it waits in system calls), so
// without this the runtime's monitor finds it on one time slice for 10 ms,
// preempts it with a signal, takes its processor away, and then polls
// every 20 µs for the next millisecond: on a loop pinned to one CPU that
// cost about 4% of the CPU per round trip. A yield every 5 ms costs a
// hand-off to another thread and back, 200 times a second.
const yieldEvery = 5 * time.Millisecond

const (
	// keepFor is how long after it last moved bytes a loop waits in
	// slices (keepWait). Keeping costs about a timed-out wait and a
	// yield per 8 ms; letting the runtime take the P costs about 60
	// wake-ups of its monitor once per silence: a loop keeps its P
	// through a silence about as long as the two costs take to even out.
	keepFor = 250 * time.Millisecond
	// keepWait is how long after its last yield a keeping loop's wait
	// ends: with the wait's millisecond rounding and the timer's slack,
	// under 10 ms.
	keepWait = 8 * time.Millisecond
)

// keeper says when a loop last moved bytes.
type keeper struct {
	at      time.Duration // loop clock
	in, out uint64        // the loop's byte counts then
}

// saw records the loop's byte counts at the end of a pass at now.
func (k *keeper) saw(in, out uint64, now time.Duration) {
	if in != k.in || out != k.out {
		k.in, k.out, k.at = in, out, now
	}
}

// maybeYield yields if yieldEvery has passed since the last yield.
func (l *loop) maybeYield(now time.Duration) {
	if now-l.yielded >= yieldEvery {
		l.yielded = now
		runtime.Gosched()
	}
}

// sleepTimeout returns how long the loop may wait for events, in ms (-1:
// no limit), and announces a wait to posters: 0 if busy or if tasks are
// queued, otherwise until the next timer, and for a loop that moved bytes
// in the last keepFor, no later than keepWait after its last yield. A
// poster that finds the loop announced wakes the driver.
func (l *loop) sleepTimeout(busy bool) int {
	timeout := l.timeout()
	if busy {
		return 0
	}
	if l.passNow-l.moved.at < keepFor {
		left := l.yielded + keepWait - l.now()
		ms := max(0, int((left+time.Millisecond-1)/time.Millisecond))
		if timeout < 0 || ms < timeout {
			timeout = ms
		}
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
