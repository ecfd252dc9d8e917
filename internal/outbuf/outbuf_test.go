package outbuf

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tcplab/tcplab/handler"
)

func TestBoundIsExact(t *testing.T) {
	b := New(10, func() {})
	if err := b.Write([]byte("12345")); err != nil {
		t.Fatal(err)
	}
	if err := b.Write([]byte("123456")); !errors.Is(err, handler.ErrOverflow) {
		t.Fatalf("write past the bound: %v", err)
	}
	if err := b.Write([]byte("12345")); err != nil {
		t.Fatalf("write up to the bound: %v", err)
	}
	batch := b.Take()
	if string(batch) != "1234512345" || b.Len() != 10 {
		t.Fatalf("batch %q, Len %d", batch, b.Len())
	}
	// Bytes in flight still count against the bound until sent.
	if err := b.Write([]byte("x")); !errors.Is(err, handler.ErrOverflow) {
		t.Fatalf("write while the batch is in flight: %v", err)
	}
	b.Sent(4)
	if err := b.Write([]byte("abcd")); err != nil {
		t.Fatal(err)
	}
	if next := b.Next(batch); string(next) != "abcd" {
		t.Fatalf("next batch %q", next)
	}
}

// TestLenFollowsEveryChange: Len, which takes no lock, is pending plus
// the unsent part of the batch in flight after each operation that moves
// bytes, and 0 once the buffer is closed with nothing to send or aborted.
func TestLenFollowsEveryChange(t *testing.T) {
	b := New(100, func() {})
	steps := []struct {
		what string
		do   func()
		want int
	}{
		{"write 5", func() { b.Write([]byte("12345")) }, 5},
		{"take", func() { b.Take() }, 5},
		{"write 3 behind the batch", func() { b.Write([]byte("abc")) }, 8},
		{"sent 2", func() { b.Sent(2) }, 6},
		{"next batch", func() { b.Next(nil) }, 3},
		{"close with a final 4", func() { b.Close(false, []byte("last")) }, 7},
		{"abort", func() { b.Abort() }, 0},
	}
	for _, s := range steps {
		s.do()
		if got := b.Len(); got != s.want {
			t.Fatalf("after %s: Len %d, want %d", s.what, got, s.want)
		}
	}
	if b.Max() != 100 {
		t.Fatalf("Max %d, want 100", b.Max())
	}
}

func TestNotifyOncePerBatchAndNotWhileHeld(t *testing.T) {
	var calls atomic.Int32
	b := New(1<<20, func() { calls.Add(1) })
	b.Write([]byte("a"))
	b.Write([]byte("b"))
	if calls.Load() != 1 {
		t.Fatalf("%d notifications for two writes before a Take", calls.Load())
	}
	batch := b.Take()
	if b.Next(batch) != nil {
		t.Fatal("a second batch appeared")
	}
	b.Hold()
	b.Write([]byte("c"))
	if calls.Load() != 1 {
		t.Fatal("notified while held")
	}
	if !b.Unhold() {
		t.Fatal("Unhold does not report pending data")
	}
}

func TestOneFlusherAtATime(t *testing.T) {
	b := New(100, func() {})
	b.Write([]byte("a"))
	first := b.Take()
	b.Write([]byte("b"))
	if second := b.Take(); second != nil {
		t.Fatalf("second flusher got %q while the first held the token", second)
	}
	if next := b.Next(first); string(next) != "b" {
		t.Fatalf("token holder's next batch %q", next)
	}
}

func TestCloseDropsPendingButKeepsInflightAndFinal(t *testing.T) {
	if out := closeDropping(t, New(100, func() {})); out != "inflight.BYE" {
		t.Fatalf("stream %q, want the in-flight batch then the farewell", out)
	}
}

// TestKeepWholeKeepsPendingOnClose: a buffer whose stream cannot lose a
// piece (TLS records) keeps what is pending when a Close asks to drop it.
func TestKeepWholeKeepsPendingOnClose(t *testing.T) {
	b := New(100, func() {})
	b.KeepWhole()
	if out := closeDropping(t, b); out != "inflight.pending.BYE" {
		t.Fatalf("stream %q, want everything written, then the farewell", out)
	}
}

// closeDropping writes a batch that is taken and one that is pending,
// closes b asking to drop what is pending, with a farewell, checks that
// only the first Close counts and that writes then fail, and returns the
// stream b gives its flusher.
func closeDropping(t *testing.T, b *Buffer) string {
	t.Helper()
	b.Write([]byte("inflight."))
	batch := b.Take()
	b.Write([]byte("pending."))
	if !b.Close(true, []byte("BYE")) {
		t.Fatal("first Close reported false")
	}
	if b.Close(false, []byte("again")) {
		t.Fatal("second Close reported true")
	}
	if err := b.Write([]byte("late")); !errors.Is(err, handler.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	out := append([]byte(nil), batch...)
	for next := b.Next(batch); next != nil; next = b.Next(next) {
		out = append(out, next...)
	}
	return string(out)
}

// TestConcurrentWritersKeepOrderAndAtomicity writes from many goroutines
// while one flusher drains, and checks each write arrives whole and in
// its writer's order.
func TestConcurrentWritersKeepOrderAndAtomicity(t *testing.T) {
	const writers, each = 8, 2000
	wake := make(chan struct{}, 1)
	b := New(1<<30, func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	})
	var out bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		want := writers * each * 8
		for out.Len() < want {
			<-wake
			for batch := b.Take(); batch != nil; batch = b.Next(batch) {
				out.Write(batch)
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				b.Write(fmt.Appendf(nil, "%d%06d\n", w, i))
			}
		})
	}
	wg.Wait()
	<-done
	next := make([]int, writers)
	for _, line := range bytes.Split(bytes.TrimSuffix(out.Bytes(), []byte("\n")), []byte("\n")) {
		var w, i int
		if _, err := fmt.Sscanf(string(line), "%1d%06d", &w, &i); err != nil || len(line) != 7 {
			t.Fatalf("torn write %q", line)
		}
		if i != next[w] {
			t.Fatalf("writer %d: %d arrived when %d was due", w, i, next[w])
		}
		next[w]++
	}
}

func TestUnholdTakeTakesWhatTheCallbackWrote(t *testing.T) {
	var notified atomic.Int32
	b := New(100, func() { notified.Add(1) })
	b.Hold()
	if err := b.Write([]byte("reply")); err != nil {
		t.Fatal(err)
	}
	if notified.Load() != 0 {
		t.Fatal("a write during Hold notified")
	}
	batch := b.UnholdTake()
	if string(batch) != "reply" {
		t.Fatalf("UnholdTake = %q, want the held write", batch)
	}
	// The token is taken: a second flusher gets nothing, and writes wait
	// for Next without notifying.
	if b.Take() != nil {
		t.Fatal("Take succeeded while UnholdTake holds the token")
	}
	b.Write([]byte("more"))
	if notified.Load() != 0 {
		t.Fatal("a write while the token is held notified")
	}
	if next := b.Next(batch); string(next) != "more" {
		t.Fatalf("Next = %q", next)
	}
	if b.Next(nil) != nil || !b.Idle() {
		t.Fatal("buffer not idle after the last batch")
	}
	// With nothing written, UnholdTake ends the hold and takes nothing;
	// later writes notify again.
	b.Hold()
	if b.UnholdTake() != nil {
		t.Fatal("UnholdTake with nothing pending returned a batch")
	}
	b.Write([]byte("x"))
	if notified.Load() != 1 {
		t.Fatalf("notified %d times after the hold ended, want 1", notified.Load())
	}
}
