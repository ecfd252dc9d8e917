package reactor

import (
	"errors"
	"testing"

	"github.com/tcplab/tcplab/internal/uring"
)

// skipWithoutRing skips a test, naming the cause, where the kernel
// refuses io_uring.
func skipWithoutRing(t *testing.T) {
	t.Helper()
	r, err := uring.New(1, 0)
	if errors.Is(err, uring.ErrUnavailable) {
		t.Skipf("skipped: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
}

// call runs fn on loop l and waits until it has.
func call(l *loop, fn func()) {
	ack := make(chan struct{})
	l.post(task{kind: taskCall, fn: fn, ack: ack})
	<-ack
}
