package backoff

import (
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestSchedule(t *testing.T) {
	var b Backoff
	want := []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000}
	for i, w := range want {
		got, first := b.Fail()
		if got != w*time.Millisecond || first != (i == 0) {
			t.Fatalf("failure %d: (%v, %v), want (%v, %v)", i, got, first, w*time.Millisecond, i == 0)
		}
	}
	if !b.Reset() {
		t.Fatal("Reset after failures reported no episode")
	}
	if b.Reset() {
		t.Fatal("second Reset reported an episode")
	}
	if got, first := b.Fail(); got != First || !first {
		t.Fatalf("after reset: (%v, %v)", got, first)
	}
}

func TestRetryable(t *testing.T) {
	if !Retryable(&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", unix.EMFILE)}) {
		t.Error("EMFILE inside an OpError is not retryable")
	}
	if Retryable(net.ErrClosed) || Retryable(unix.EBADF) {
		t.Error("a closed listener is retryable")
	}
}
