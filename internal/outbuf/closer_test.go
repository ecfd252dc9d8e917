package outbuf

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tcplab/tcplab/handler"
)

type bye struct{}

func (bye) Data(in []byte) (int, error) { return len(in), nil }
func (bye) Closed(error)                {}
func (bye) Farewell(reason error) []byte {
	return []byte("BYE " + reason.Error())
}

// TestCloserFirstWinsAndSealsAfterTheFarewell closes from many goroutines
// at once: exactly one wins, its reason and deadline stick, and the stream
// ends with what was written and then its farewell.
func TestCloserFirstWinsAndSealsAfterTheFarewell(t *testing.T) {
	b := New(1<<10, func() {})
	b.Write([]byte("hello;"))
	var c Closer
	if c.Closing() || c.Sealed() || c.Reason() != nil {
		t.Fatal("a zero Closer is not open")
	}
	deadline := time.Now().Add(time.Second)
	wins := make(chan error, 16)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			reason := errors.New("closer " + string(rune('a'+i)))
			if c.Close(b, reason, FarewellOf(bye{}, true), deadline) {
				wins <- reason
			}
		})
	}
	wg.Wait()
	close(wins)
	var won []error
	for r := range wins {
		won = append(won, r)
	}
	if len(won) != 1 || c.Reason() != won[0] || !c.Closing() || !c.Sealed() {
		t.Fatalf("winners %v, reason %v, closing %v, sealed %v", won, c.Reason(), c.Closing(), c.Sealed())
	}
	if d, ok := c.Deadline(); !ok || !d.Equal(deadline) {
		t.Fatalf("deadline %v %v", d, ok)
	}
	if err := b.Write([]byte("late")); !errors.Is(err, handler.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	if got, want := string(b.Take()), "hello;BYE "+won[0].Error(); got != want {
		t.Fatalf("stream %q, want %q", got, want)
	}
}

func TestFarewellOnlyForEngineCloses(t *testing.T) {
	if FarewellOf(bye{}, false) != nil {
		t.Error("a farewell for a close the session asked for")
	}
	if FarewellOf(bye{}, true) == nil {
		t.Error("no farewell for an engine close")
	}
}

// TestCloserFinalIsLastOverTheBound closes with fixed last words (what
// Conn.CloseWith passes) on a buffer that is full: they are queued after
// everything written, over the bound, and nothing can follow them.
func TestCloserFinalIsLastOverTheBound(t *testing.T) {
	b := New(8, func() {})
	if err := b.Write([]byte("12345678")); err != nil {
		t.Fatal(err)
	}
	var c Closer
	if !c.Close(b, errors.New("done"), Final("END"), time.Now().Add(time.Second)) {
		t.Fatal("Close lost on an open buffer")
	}
	if err := b.Write([]byte("x")); !errors.Is(err, handler.ErrClosed) {
		t.Fatalf("write after the last words: %v", err)
	}
	if got := string(b.Take()); got != "12345678END" {
		t.Fatalf("stream %q, want the writes then END", got)
	}
}
