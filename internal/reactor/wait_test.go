package reactor

import (
	"bufio"
	"io"
	"testing"

	"github.com/tcplab/tcplab/internal/testkit/wait"
)

// TestLoopKeepsItsPWhileActive: a loop that has just moved bytes waits in
// slices shorter than 10 ms, so the Go runtime never takes its P away
// between bursts (wait.go); a loop idle for keepFor, and a fresh one,
// waits without a limit, so an idle server makes no wake-ups at all.
func TestLoopKeepsItsPWhileActive(t *testing.T) { kernels(t, testLoopKeepsItsPWhileActive) }

func testLoopKeepsItsPWhileActive(t *testing.T, o options) {
	o.Loops = 1
	var waits *wakeCounter
	o.prepare = func(s *Server) { waits = countWakeups(s.loops[0]) }
	s := start(t, newLines(t), o)
	c := dial(t, s)
	r := bufio.NewReader(c)
	unboundedAfter := func(n uint64) func() error {
		return func() error {
			if waits.unbounded.Load() <= n {
				return wait.ErrNotYet
			}
			return nil
		}
	}
	wait.Eventually(t, wait.Bound, "a fresh loop waits without a limit", unboundedAfter(0))
	for round := range 2 {
		io.WriteString(c, "hello\n")
		expectLine(t, r, "hello")
		sliced, unbounded := waits.sliced.Load(), waits.unbounded.Load()
		wait.Eventually(t, wait.Bound, "the loop waits in slices after moving bytes", func() error {
			if waits.sliced.Load() < sliced+3 {
				return wait.ErrNotYet
			}
			return nil
		})
		wait.Eventually(t, wait.Bound, "the idle loop waits without a limit again", unboundedAfter(unbounded))
		t.Logf("round %d: %d waits in slices, then a wait without a limit", round, waits.sliced.Load()-sliced)
	}
}
