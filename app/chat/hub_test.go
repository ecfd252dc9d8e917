package chat

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/testkit"
)

// hookConn is a memConn that calls hook with each frame as it is queued,
// before the frame can reach the client.
type hookConn struct {
	memConn
	hook func(p []byte)
}

func (c *hookConn) Write(p []byte) error {
	c.hook(p)
	return c.memConn.Write(p)
}

// newGateConn returns a hookConn whose next Write, once armed, stops until
// gate is closed: a receiver in the middle of a fan-out. entered is closed
// when that Write has begun.
func newGateConn() (c *hookConn, armed *atomic.Bool, entered, gate chan struct{}) {
	armed, entered, gate = new(atomic.Bool), make(chan struct{}), make(chan struct{})
	c = &hookConn{hook: func([]byte) {
		if armed.CompareAndSwap(true, false) {
			close(entered)
			<-gate
		}
	}}
	return c, armed, entered, gate
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
	gate, armed, entered, opened := newGateConn()
	sender := h.Open(&senderConn)
	held := h.Open(gate) // a member before the mover in the lobby's list
	mover := h.Open(&moverConn)
	defer func() {
		for _, s := range []interface{ Closed(error) }{sender, held, mover} {
			s.Closed(nil)
		}
	}()
	lobby := mover.(*session).room

	armed.Store(true)
	var wg sync.WaitGroup
	wg.Go(func() { sender.Data([]byte("hello\n")) })
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		close(opened)
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
	err = testkit.Wait(testkit.Bound, func() error {
		moverConn.mu.Lock()
		told := strings.Contains(string(moverConn.out), "OK join elsewhere\n")
		moverConn.mu.Unlock()
		waiting := !lobby.fan.TryRLock()
		if !waiting {
			lobby.fan.RUnlock()
		}
		if told || waiting {
			return nil
		}
		return testkit.ErrNotYet
	})
	close(opened)
	wg.Wait()
	if err != nil {
		t.Fatalf("the mover was neither told OK join nor waiting for the fan-out after %v", testkit.Bound)
	}

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

// TestMemberWhenItsFirstFrameIsQueued: a connection's HELLO, and its OK
// join, are queued only once /who and /rooms count it in the room. Before,
// they were queued just before it became a member, and a client that had
// its OK join could see another client's /rooms leave the room out (it
// failed so in a CI run of the two-hubs conformance case).
func TestMemberWhenItsFirstFrameIsQueued(t *testing.T) {
	h, err := New(Options{Framing: frame.Line})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	n := node{h.hub}
	var members []string
	c := &hookConn{}
	c.hook = func(p []byte) {
		switch f := string(p); {
		case strings.HasPrefix(f, "HELLO "):
			members = append(members, strings.Join(n.Members(Lobby), ","))
		case f == "OK join dev\n":
			members = append(members, strings.Join(n.Members("dev"), ","), strconv.Itoa(n.Rooms()["dev"]))
		}
	}
	s := h.Open(c)
	defer s.Closed(nil)
	s.Data([]byte("/join dev\n"))
	if want := []string{"guest-1", "guest-1", "1"}; !slices.Equal(members, want) {
		t.Errorf("members when HELLO and OK join dev were queued (lobby, dev, dev's count): %q, want %q", members, want)
	}
}

// nickOf returns a valid nick of n characters starting with c.
func nickOf(c byte, n int) string { return string(c) + strings.Repeat("n", n-1) }

// TestListCutsOnlyWhatPassesTheLimit: a /who or /rooms list is cut, with
// " ...", only if it would pass the server frame limit; one that fits
// exactly, or within the 4 bytes of " ...", is sent whole.
func TestListCutsOnlyWhatPassesTheLimit(t *testing.T) {
	h, err := New(Options{Framing: frame.Line, MaxServerFrame: MinServerFrame})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// 15 nicks of 32 characters, then one of n: "OK who" + 15*33 + 1 + n.
	var long []string
	for i := range 15 {
		long = append(long, nickOf(byte('a'+i), MaxNick))
	}
	base := len("OK who") + 15*(1+MaxNick) + 1
	for _, n := range []int{1, MinServerFrame - base - 3, MinServerFrame - base - 1, MinServerFrame - base} {
		items := append(append([]string{}, long...), nickOf('z', n))
		want := "OK who " + strings.Join(items, " ")
		if got := frames(t, h.hub.list(nil, "who", items)); len(got) != 1 || got[0] != want {
			t.Errorf("a %d-byte list: got %q, want it whole", len(want), got)
		}
	}
	items := append(append([]string{}, long...), nickOf('z', MinServerFrame-base+1))
	want := "OK who " + strings.Join(long, " ") + " ..."
	if got := frames(t, h.hub.list(nil, "who", items)); len(got) != 1 || got[0] != want {
		t.Errorf("a list one byte over the limit: got %q, want %q", got, want)
	}
	// A list whose last but one item fits only without room for " ...".
	items = append(append([]string{}, long...), nickOf('y', MinServerFrame-base), "z")
	want = "OK who " + strings.Join(long, " ") + " ..."
	if got := frames(t, h.hub.list(nil, "who", items)); len(got) != 1 || got[0] != want {
		t.Errorf("got %q, want %q", got, want)
	}

	// The same through /who, with a list that fills the frame exactly.
	nicks := append(long, nickOf('z', MinServerFrame-base))
	conns := make([]memConn, len(nicks))
	var last handler.Session
	for i, nick := range nicks {
		last = h.Open(&conns[i])
		defer last.Closed(nil)
		last.Data([]byte("/nick " + nick + "\n"))
	}
	c := &conns[len(conns)-1]
	c.mu.Lock()
	c.out = c.out[:0]
	c.mu.Unlock()
	last.Data([]byte("/who\n"))
	c.mu.Lock()
	got := frames(t, c.out)
	c.mu.Unlock()
	want = "OK who " + strings.Join(nicks, " ")
	if len(want) != MinServerFrame || len(got) != 1 || got[0] != want {
		t.Errorf("/who filling the frame (%d bytes): got %q", len(want), got)
	}
}
