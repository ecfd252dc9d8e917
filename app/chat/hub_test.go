package chat

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcplab/tcplab/frame"
)

// gateConn is a memConn whose next Write, once armed, stops until the gate
// opens: a receiver in the middle of a fan-out.
type gateConn struct {
	memConn
	armed   atomic.Bool
	entered chan struct{} // closed when the armed Write has begun
	gate    chan struct{} // close to let it finish
}

func newGateConn() *gateConn {
	return &gateConn{entered: make(chan struct{}), gate: make(chan struct{})}
}

func (c *gateConn) Write(p []byte) error {
	if c.armed.CompareAndSwap(true, false) {
		close(c.entered)
		<-c.gate
	}
	return c.memConn.Write(p)
}

// TestNoOldRoomTrafficAfterOKJoin: a member that moves to another room
// gets none of its old room's traffic after "OK join", even from a fan-out
// to the old room that loaded the member list before it left. A fan-out
// is held in the middle (at a member before it) while it switches rooms.
func TestNoOldRoomTrafficAfterOKJoin(t *testing.T) {
	h, err := New(Options{Framing: frame.Line})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var senderConn, moverConn memConn
	gate := newGateConn()
	sender := h.Open(&senderConn)
	held := h.Open(gate) // a member before the mover in the lobby's list
	mover := h.Open(&moverConn)
	defer func() {
		for _, s := range []interface{ Closed(error) }{sender, held, mover} {
			s.Closed(nil)
		}
	}()
	lobby := mover.(*session).room

	gate.armed.Store(true)
	var wg sync.WaitGroup
	wg.Go(func() { sender.Data([]byte("hello\n")) })
	select {
	case <-gate.entered:
	case <-time.After(10 * time.Second):
		close(gate.gate)
		t.Fatal("the fan-out never reached the held member")
	}
	moved := make(chan struct{})
	wg.Go(func() {
		defer close(moved)
		mover.Data([]byte("/join elsewhere\n"))
	})
	// Let the fan-out go on once the mover has either been told OK join
	// (the fan-out then writes the old room's MSG after it) or is waiting
	// for that fan-out to end (the room's barrier has a writer waiting, so
	// a read lock cannot be had).
	deadline := time.Now().Add(10 * time.Second)
	for {
		moverConn.mu.Lock()
		told := strings.Contains(string(moverConn.out), "OK join elsewhere\n")
		moverConn.mu.Unlock()
		waiting := !lobby.fan.TryRLock()
		if !waiting {
			lobby.fan.RUnlock()
		}
		if told || waiting || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(gate.gate)
	wg.Wait()

	moverConn.mu.Lock()
	got := frames(t, moverConn.out)
	moverConn.mu.Unlock()
	in, msgs := Lobby, 0
	for _, f := range got {
		if r, ok := strings.CutPrefix(f, "OK join "); ok {
			in = r
			continue
		}
		if strings.HasPrefix(f, "MSG "+Lobby+" ") {
			msgs++
			if in != Lobby {
				t.Errorf("the mover got %q after OK join %s; all it got: %q", f, in, got)
			}
		}
	}
	if in != "elsewhere" || msgs != 1 {
		t.Errorf("the mover got %d lobby messages and ended in %s, want the one sent while it was in the lobby, then OK join elsewhere: %q", msgs, in, got)
	}
}
