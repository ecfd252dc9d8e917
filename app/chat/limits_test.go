package chat

import (
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

// TestIdleTimerFiresOnceAndStops checks the timer re-arms on activity and
// that stop prevents the call; the durations are failure bounds.
func TestIdleTimerFiresOnceAndStops(t *testing.T) {
	fired := make(chan struct{}, 2)
	it := startIdle(30*time.Millisecond, time.Now(), func() { fired <- struct{}{} })
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("idle timer never fired")
	}
	it.stop()

	stopped := startIdle(time.Hour, time.Now(), func() { fired <- struct{}{} })
	stopped.stop()
	if startIdle(0, time.Now(), nil) != nil {
		t.Error("a zero timeout made a timer")
	}
	select {
	case <-fired:
		t.Fatal("fired twice or after stop")
	default:
	}
}
