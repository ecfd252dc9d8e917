package chat

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newBucket(10, 3) // 10 a second, bursts of 3
	for i := range 3 {
		if !b.allow(t0) {
			t.Fatalf("burst message %d refused", i)
		}
	}
	if b.allow(t0) {
		t.Fatal("4th message in the same instant allowed")
	}
	if b.allow(t0.Add(50 * time.Millisecond)) {
		t.Fatal("allowed after half a token's refill")
	}
	if !b.allow(t0.Add(100 * time.Millisecond)) {
		t.Fatal("refused after a full token's refill")
	}
	// A long pause refills to the burst, no more.
	later := t0.Add(time.Hour)
	for i := range 3 {
		if !b.allow(later) {
			t.Fatalf("after a pause, message %d refused", i)
		}
	}
	if b.allow(later) {
		t.Fatal("refill went past the burst")
	}
	// A clock that steps back refills nothing and breaks nothing.
	if b.allow(t0) {
		t.Fatal("allowed when the clock stepped back")
	}
	for _, off := range []bucket{newBucket(0, 10), newBucket(10, 0)} {
		for range 1000 {
			if !off.allow(t0) {
				t.Fatal("a bucket with a zero rate or burst limited")
			}
		}
	}
}

func TestIdleRemaining(t *testing.T) {
	epoch := time.Unix(0, 0)
	it := &idleTimer{timeout: time.Second, epoch: epoch}
	it.touch(epoch.Add(10 * time.Second))
	if got := it.remaining(epoch.Add(10*time.Second + 300*time.Millisecond)); got != 700*time.Millisecond {
		t.Errorf("remaining %v, want 700ms", got)
	}
	if got := it.remaining(epoch.Add(11 * time.Second)); got > 0 {
		t.Errorf("remaining %v at the timeout, want <= 0", got)
	}
	var nilTimer *idleTimer
	nilTimer.touch(epoch) // a disabled timer ignores calls
	nilTimer.stop()
}

// TestIdleTimerFiresOnceAndStops checks that activity re-arms the timer
// (a firing before the timeout has passed since the last frame waits for
// the rest), that it calls expire once, and that stop prevents the call
// even from a firing already on its way. The firings are driven by hand
// (fire) where the outcome must not depend on timing; then the real
// timer, whose durations are failure bounds only.
func TestIdleTimerFiresOnceAndStops(t *testing.T) {
	var calls atomic.Int32
	count := func() { calls.Add(1) }
	now := time.Now()

	it := startIdle(time.Hour, now, count)
	defer it.stop()
	it.touch(now.Add(-2 * time.Hour)) // idle too long...
	it.touch(time.Now())              // ...but a frame has just come
	it.fire()
	if n := calls.Load(); n != 0 {
		t.Fatalf("fired %d times though a frame had just come", n)
	}
	it.touch(time.Now().Add(-2 * time.Hour))
	it.fire()
	it.fire()
	if n := calls.Load(); n != 1 {
		t.Fatalf("after the timeout, fired %d times; want once", n)
	}

	stopped := startIdle(time.Hour, now, count)
	stopped.touch(now.Add(-2 * time.Hour))
	stopped.stop()
	stopped.fire() // a firing that raced with stop
	if n := calls.Load(); n != 1 {
		t.Fatal("a stopped timer fired")
	}

	// The live timer: a frame "arriving" 300ms from now makes the first
	// firing, at 50ms, re-arm; expire comes no sooner than 50ms after that
	// frame (the code checks it on the monotonic clock before calling).
	const timeout = 50 * time.Millisecond
	fired := make(chan time.Time, 2)
	live := startIdle(timeout, time.Now(), func() { fired <- time.Now() })
	defer live.stop()
	frameAt := time.Now().Add(300 * time.Millisecond)
	live.touch(frameAt)
	select {
	case at := <-fired:
		if early := frameAt.Add(timeout).Sub(at); early > 0 {
			t.Errorf("fired %v before the timeout had passed since the last frame", early)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("idle timer never fired")
	}
	live.mu.Lock()
	done := live.stopped
	live.mu.Unlock()
	if !done {
		t.Error("the timer is still armed after it fired")
	}

	if startIdle(0, time.Now(), nil) != nil {
		t.Error("a zero timeout made a timer")
	}
}
