package sleep

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSleepWaitsOutTheDelayAgainAndAgain reuses one Timer: each Sleep
// lasts its delay at least and reports that it passed.
func TestSleepWaitsOutTheDelayAgainAndAgain(t *testing.T) {
	var s Timer
	s.Stop() // before first use: nothing to stop
	defer s.Stop()
	never := make(chan struct{})
	for _, d := range []time.Duration{time.Millisecond, 3 * time.Millisecond, time.Millisecond} {
		start := time.Now()
		if !s.Sleep(d, never) {
			t.Fatalf("Sleep(%v) was cut short with stop open", d)
		}
		if took := time.Since(start); took < d {
			t.Fatalf("Sleep(%v) returned after %v", d, took)
		}
	}
}

// TestSleepEndsWhenStopped: a closed stop ends a long Sleep at once (the
// delay would outlast the test's deadline), and the Timer still sleeps
// after.
func TestSleepEndsWhenStopped(t *testing.T) {
	var s Timer
	defer s.Stop()
	stop := make(chan struct{})
	close(stop)
	if s.Sleep(time.Hour, stop) {
		t.Fatal("Sleep with stop closed reported the hour passed")
	}
	if !s.Sleep(time.Millisecond, make(chan struct{})) {
		t.Fatal("Sleep after a stopped one was cut short")
	}
}
