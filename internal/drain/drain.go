// Package drain holds what every model's Shutdown shares about its
// context: when the drain of queued writes must end, how a cancellation
// cuts it, and the error that reports a drain cut short.
package drain

import (
	"context"
	"fmt"
	"time"
)

// Deadline returns when a shutdown's drain must end: ctx's deadline, or
// timeout from now if ctx has none. A cancellation of ctx before then cuts
// the drain too (the models watch ctx.Done()).
func Deadline(ctx context.Context, timeout time.Duration) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(timeout)
}

// Cut returns the error Shutdown returns when its drain was cut short:
// what happened, wrapping ctx's error if ctx is done (context.Canceled for
// a cancellation) and context.DeadlineExceeded otherwise (the drain
// timeout passed).
func Cut(ctx context.Context, what string) error {
	cause := ctx.Err()
	if cause == nil {
		cause = context.DeadlineExceeded
	}
	return fmt.Errorf("shutdown: %s: %w", what, cause)
}

// Wait waits for done until deadline or until ctx is done, whichever is
// first, and reports whether done came first.
func Wait(ctx context.Context, done <-chan struct{}, deadline time.Time) bool {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-done:
		return true
	case <-timer.C:
	case <-ctx.Done():
	}
	select {
	case <-done: // both at once: it finished
		return true
	default:
		return false
	}
}
