package reactor

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcplab/tcplab/internal/testkit/wait"
)

// TestWorkersRunAtMostMax submits more functions than the pool has
// workers: max run at once, the first submitted; wait reports the pool
// busy until they have all run; and stop ends the workers (goleak
// checks).
func TestWorkersRunAtMostMax(t *testing.T) {
	const max, n = 3, 10
	w := newWorkers(max)
	release := make(chan struct{})
	var running, most atomic.Int32
	var mu sync.Mutex
	var started []int
	for i := range n {
		w.submit(func() {
			mu.Lock()
			started = append(started, i)
			mu.Unlock()
			r := running.Add(1)
			for m := most.Load(); r > m && !most.CompareAndSwap(m, r); m = most.Load() {
			}
			<-release
			running.Add(-1)
		})
	}
	wait.Eventually(t, wait.Bound, "the first functions run", func() error {
		if r := running.Load(); r != max {
			return fmt.Errorf("%d functions running, want %d", r, max)
		}
		return nil
	})
	mu.Lock()
	first := slices.Sorted(slices.Values(started))
	mu.Unlock()
	if !slices.Equal(first, []int{0, 1, 2}) {
		t.Errorf("functions %v ran first, want the first three submitted", first)
	}
	if w.wait(context.Background(), time.Now()) {
		t.Fatal("wait reported the pool idle with functions running")
	}
	close(release)
	if !w.wait(context.Background(), time.Now().Add(ioTimeout)) {
		t.Fatal("the functions did not all run")
	}
	w.stop()
	if m := most.Load(); m != max {
		t.Errorf("at most %d functions ran at once, want %d", m, max)
	}
}

// TestWorkersQueueInOrder gives one worker a queue: the functions run in
// the order submitted, and a function submitted after stop still runs.
func TestWorkersQueueInOrder(t *testing.T) {
	w := newWorkers(1)
	var order []int
	done := make(chan struct{})
	for i := range 20 {
		w.submit(func() { order = append(order, i) })
	}
	w.stop()
	w.submit(func() { close(done) })
	<-done
	if !w.wait(context.Background(), time.Now().Add(ioTimeout)) {
		t.Fatal("the functions did not all run")
	}
	for i, got := range order {
		if got != i {
			t.Fatalf("functions ran in the order %v", order)
		}
	}
	if len(order) != 20 {
		t.Fatalf("%d of 20 functions ran", len(order))
	}
}

// waitingBytes returns the bytes s's loops hold for after offloaded
// functions.
func waitingBytes(s *Server) int {
	n := 0
	for _, l := range s.loops {
		call(l, func() {
			for _, b := range l.waiting {
				n += len(b)
			}
		})
	}
	return n
}

// TestOffloadKeepsReadingToMaxInbound sends eight times MaxInbound while a
// function runs: the loop reads ahead until MaxInbound bytes wait (less
// than a read more) and stops there; after the function every line comes
// back, in order.
func TestOffloadKeepsReadingToMaxInbound(t *testing.T) {
	kernels(t, testOffloadKeepsReadingToMaxInbound)
}

func testOffloadKeepsReadingToMaxInbound(t *testing.T, o options) {
	offloadReadsAhead(t, o, dial, 0)
}

// offloadReadsAhead is TestOffloadKeepsReadingToMaxInbound with o, on a
// connection connect makes, whose reads may hand over up to more bytes
// beyond a read's worth at once (a TLS record left over from the read
// before).
func offloadReadsAhead(t *testing.T, o options, connect func(*testing.T, *Server) net.Conn, more int) {
	o.MaxInbound = 64 << 10
	h := newLines(t)
	s := start(t, h, o)
	c := connect(t, s)
	line := strings.Repeat("x", 999) + "\n"
	n := 8 * o.MaxInbound / len(line)
	wrote := make(chan error, 1)
	go func() {
		_, err := io.WriteString(c, "off\n"+strings.Repeat(line, n))
		wrote <- err
	}()
	wait.Eventually(t, wait.Bound, "MaxInbound waits for the function", func() error {
		if got := waitingBytes(s); got < o.MaxInbound {
			return fmt.Errorf("%d bytes wait for the function", got)
		}
		return nil
	})
	first := waitingBytes(s)
	if limit := o.MaxInbound + s.chunk + more; first > limit {
		t.Errorf("%d bytes wait for the function: want at most MaxInbound and a read, %d", first, limit)
	}
	if again := waitingBytes(s); again != first {
		t.Errorf("reading went on past MaxInbound: %d bytes wait, then %d", first, again)
	}
	close(h.release)
	r := bufio.NewReader(c)
	for i := range n {
		if got, err := r.ReadString('\n'); got != line || err != nil {
			t.Fatalf("line %d: %q, %v", i, got[:min(len(got), 20)], err)
		}
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}

// TestOffloadPanicIsLoggedAndCounted makes an offloaded function panic:
// its connection closes, the log says why, and Stats counts it.
func TestOffloadPanicIsLoggedAndCounted(t *testing.T) { models(t, testOffloadPanicIsLoggedAndCounted) }

func testOffloadPanicIsLoggedAndCounted(t *testing.T, o options) {
	logs := newLogCounter()
	o.Logger = slog.New(logs)
	s := start(t, newLines(t), o)
	c := dial(t, s)
	io.WriteString(c, "offpanic\n")
	if rest, err := io.ReadAll(c); string(rest) != "BYE offloaded function panicked: test panic\n" || err != nil {
		t.Fatalf("the connection ended with %q, %v", rest, err)
	}
	if st := s.Stats(); st.OffloadPanics != 1 || st.Offloads != 1 {
		t.Errorf("Stats count %d offloaded functions, %d panics: want 1, 1", st.Offloads, st.OffloadPanics)
	}
	if n := logs.count("offloaded function panicked; closing its connection"); n != 1 {
		t.Errorf("%d log records of the panic, want 1", n)
	}
}
