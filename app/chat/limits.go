package chat

import (
	"sync"
	"sync/atomic"
	"time"
)

// bucket is a token bucket: it holds up to burst tokens, gains rate tokens
// a second, and each message takes one. It starts full. Only the
// connection's Data calls use it, so it needs no lock.
type bucket struct {
	rate, burst float64 // rate <= 0 turns the bucket off
	tokens      float64
	last        time.Time
}

func newBucket(rate float64, burst int) bucket {
	if rate <= 0 || burst <= 0 {
		return bucket{}
	}
	return bucket{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

// allow takes a token at time now, or reports false if there is none.
func (b *bucket) allow(now time.Time) bool {
	if b.rate <= 0 {
		return true
	}
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	if now.After(b.last) {
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// idleTimer calls expire once no frame has arrived for timeout. A frame
// only stores a timestamp (touch); the timer, when it fires, re-arms
// itself for the time that is left. So a busy connection costs one atomic
// store per Data call and one timer wake-up per timeout, and there is no
// goroutine per connection.
type idleTimer struct {
	timeout time.Duration
	epoch   time.Time    // a monotonic clock base shared by the hub
	last    atomic.Int64 // time of the last frame, in ns since epoch
	expire  func()

	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

// startIdle starts an idle timer, or returns nil if timeout <= 0.
func startIdle(timeout time.Duration, epoch time.Time, expire func()) *idleTimer {
	if timeout <= 0 {
		return nil
	}
	it := &idleTimer{timeout: timeout, epoch: epoch, expire: expire}
	it.touch(time.Now())
	it.mu.Lock()
	it.t = time.AfterFunc(timeout, it.fire)
	it.mu.Unlock()
	return it
}

// touch records activity at now.
func (it *idleTimer) touch(now time.Time) {
	if it != nil {
		it.last.Store(int64(now.Sub(it.epoch)))
	}
}

// remaining returns how long is left at now before the connection is idle
// too long; zero or less means it is.
func (it *idleTimer) remaining(now time.Time) time.Duration {
	return it.timeout - (now.Sub(it.epoch) - time.Duration(it.last.Load()))
}

func (it *idleTimer) fire() {
	left := it.remaining(time.Now())
	it.mu.Lock()
	if it.stopped {
		it.mu.Unlock()
		return
	}
	if left > 0 {
		it.t.Reset(left)
		it.mu.Unlock()
		return
	}
	it.stopped = true
	it.mu.Unlock()
	it.expire()
}

// stop cancels the timer.
func (it *idleTimer) stop() {
	if it == nil {
		return
	}
	it.mu.Lock()
	it.stopped = true
	it.t.Stop()
	it.mu.Unlock()
}
