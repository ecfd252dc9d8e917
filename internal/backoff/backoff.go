// Package backoff is the delay schedule accept loops use after temporary
// errors such as EMFILE: 5 ms, doubling, at most 1 s, reset by a success.
// These are net/http's numbers.
package backoff

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// First is the first delay.
	First = 5 * time.Millisecond
	// Max is the longest delay.
	Max = time.Second
)

// Backoff tracks one run of consecutive failures. The zero value is ready.
type Backoff struct {
	delay time.Duration
}

// Fail records a failure and returns how long to wait before retrying. The
// second result is true for the first failure of a run, so a caller can
// log once per episode.
func (b *Backoff) Fail() (wait time.Duration, first bool) {
	if b.delay == 0 {
		b.delay = First
		return b.delay, true
	}
	b.delay = min(2*b.delay, Max)
	return b.delay, false
}

// Reset ends a run of failures. It reports whether there was one.
func (b *Backoff) Reset() bool {
	had := b.delay != 0
	b.delay = 0
	return had
}

// Retryable reports whether an accept error is one to back off from and
// retry (out of file descriptors or memory, a connection aborted before it
// was accepted) rather than a broken listener.
func Retryable(err error) bool {
	for _, e := range []error{unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM,
		unix.ECONNABORTED, unix.EPROTO, unix.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
