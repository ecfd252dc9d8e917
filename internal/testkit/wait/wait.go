// Package wait is the test kit's wait helper, in a package of its own
// that imports nothing of tcplab's, so that the tests of the packages
// below package testkit (the event loops, io_uring, the launcher) can use
// it too. Other tests use it through testkit.
package wait

import (
	"errors"
	"testing"
	"time"
)

// Bound is the failure limit of a wait that should end at once on an idle
// machine (a server answering, a counter reaching its value): generous, so
// that only a real hang fails on a loaded one. It is never a timing
// assertion.
const Bound = 30 * time.Second

// pollEvery is how often Until and Eventually check their condition.
const pollEvery = 10 * time.Millisecond

// ErrNotYet is what a condition with nothing more to say returns while it
// does not hold.
var ErrNotYet = errors.New("not yet")

// Until checks cond until it returns nil, every 10 ms, and returns nil;
// or, once bound has passed, cond's last error. It is Eventually for
// goroutines other than the test's.
func Until(bound time.Duration, cond func() error) error {
	deadline := time.Now().Add(bound)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(pollEvery)
	}
}

// Eventually waits until cond returns nil, and fails the test with what
// and cond's last error if it still does not after bound. bound is a
// failure limit (usually Bound), not a timing assertion.
func Eventually(t testing.TB, bound time.Duration, what string, cond func() error) {
	t.Helper()
	if err := Until(bound, cond); err != nil {
		t.Fatalf("%s: still not so after %v: %v", what, bound, err)
	}
}
