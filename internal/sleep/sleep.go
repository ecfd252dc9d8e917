// Package sleep waits out a delay that a stop signal can cut short, on one
// timer reused from wait to wait: for loops that wait often (a paused
// connection's reads, an open-loop client's pacing).
package sleep

import "time"

// Timer sleeps on one reused time.Timer, made on first use. The zero value
// is ready; one goroutine at a time may use it.
type Timer struct {
	t *time.Timer
}

// Sleep waits d, or until stop is closed, and reports whether d passed
// first.
func (s *Timer) Sleep(d time.Duration, stop <-chan struct{}) bool {
	if s.t == nil {
		s.t = time.NewTimer(d)
	} else {
		s.t.Reset(d)
	}
	select {
	case <-s.t.C:
		return true
	case <-stop:
		s.t.Stop()
		return false
	}
}

// Stop stops the timer, if it was made.
func (s *Timer) Stop() {
	if s.t != nil {
		s.t.Stop()
	}
}
