package reactor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/serving"
	"github.com/tcplab/tcplab/internal/testkit/wait"
	"github.com/tcplab/tcplab/internal/uring"
)

// skipWithoutRing skips a test, naming the cause, where the kernel
// refuses io_uring.
func skipWithoutRing(t *testing.T) {
	t.Helper()
	r, err := uring.New(1, 0, 0)
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

// echoer is the plainest handler: every byte comes back.
type echoer struct{}

func (echoer) Open(c handler.Conn) handler.Session { return echoSession{c} }

type echoSession struct{ c handler.Conn }

func (s echoSession) Data(in []byte) (int, error) { return len(in), s.c.Write(in) }
func (echoSession) Closed(error)                  {}

// ringOptions are testOptions on io_uring loops, skipping the test where
// the kernel refuses io_uring. Their logger is a logCounter, which
// counts what the loops say about their resources.
func ringOptions(t *testing.T) options {
	t.Helper()
	skipWithoutRing(t)
	o := testOptions()
	o.model = Uring
	o.Logger = slog.New(newLogCounter())
	return o
}

// ringTotals counts the times the ring loops ran short of a resource, as
// their debug records say.
type ringTotals struct{ starvations, shortSends, slotWaits, grown int }

// stopRing shuts s down and checks that every loop's ring drained: no
// operation in flight, every connection id free, so its memory was
// unmapped, and that every send mapping added to the first was unmapped
// once its sends were done. It returns the loops' shortages.
func stopRing(t *testing.T, s *Server, served <-chan error) ringTotals {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	for i, l := range s.loops {
		rg := ringOf(l)
		if !rg.drained || rg.inflight != 0 || len(rg.freeIDs) != len(rg.conns) || rg.lost != 0 {
			t.Errorf("loop %d after shutdown: drained %v, %d operations in flight, %d of %d ids free, %d lost",
				i, rg.drained, rg.inflight, len(rg.freeIDs), len(rg.conns), rg.lost)
		}
	}
	logs := s.cfg.Logger.Handler().(*logCounter)
	if grown, shrunk := logs.count(msgGrew), logs.count(msgShrank); grown != shrunk {
		t.Errorf("after shutdown: %d send mappings added, %d unmapped", grown, shrunk)
	}
	return ringTotals{
		starvations: logs.count(msgStarved),
		shortSends:  logs.count(msgShortSend),
		slotWaits:   logs.count(msgSlotWait),
		grown:       logs.count(msgGrew),
	}
}

// pattern returns n bytes that differ from any shift of themselves.
func pattern(n, seed int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + i/251 + seed)
	}
	return p
}

// echoCheck writes p on c from a goroutine and reads it back, in reads of
// at most readSize with pause between them, and checks it.
func echoCheck(c net.Conn, p []byte, readSize int, pause time.Duration) error {
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(p)
		werr <- err
	}()
	got := make([]byte, 0, len(p))
	buf := make([]byte, readSize)
	for len(got) < len(p) {
		n, err := c.Read(buf[:min(readSize, len(p)-len(got))])
		if err != nil {
			return fmt.Errorf("after %d of %d bytes: %w", len(got), len(p), err)
		}
		got = append(got, buf[:n]...)
		time.Sleep(pause)
	}
	if err := <-werr; err != nil {
		return err
	}
	if !bytes.Equal(got, p) {
		i := 0
		for got[i] == p[i] {
			i++
		}
		return fmt.Errorf("echo differs at byte %d of %d", i, len(p))
	}
	return nil
}

// greeter writes its greeting, whole, when a connection opens.
type greeter []byte

func (g greeter) Open(c handler.Conn) handler.Session {
	c.Write(g)
	return echoSession{c}
}

// echoStorm has n clients echo size bytes each through s at once, and
// checks every echo.
func echoStorm(t *testing.T, s *Server, n, size int) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range n {
		c := dial(t, s)
		wg.Go(func() {
			if err := echoCheck(c, pattern(size, i), 64<<10, 0); err != nil {
				t.Errorf("client %d: %v", i, err)
			}
		})
	}
	wg.Wait()
}

// TestRingShortSends: a 6 MiB greeting goes out as one send from an 8 MiB
// slot, more than the socket's send buffer holds (at most 4 MiB by
// default, 16 KiB to begin with): the kernel completes it short, and the
// loop must send the rest from where each send stopped, in order.
func TestRingShortSends(t *testing.T) {
	o := ringOptions(t)
	o.MaxPending = 8 << 20 // reading pauses over 4 MiB
	o.ring = RingOptions{SendSlots: 2, SendSlotSize: 8 << 20}
	want := pattern(6<<20, 1)
	s, served := serve(t, greeter(want), o)
	c := dial(t, s)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the greeting arrived altered")
	}
	c.Close()
	tot := stopRing(t, s, served)
	t.Logf("%d short sends", tot.shortSends)
	if tot.shortSends == 0 {
		t.Fatal("no send completed short: the test did not exercise the path")
	}
}

// TestRingResourcesRunOut starves a loop of one resource while clients
// stream through it at once, and checks that every echo still comes back
// whole and in order, that the ring works afterwards, and that the
// shortage really happened:
//
//   - two receive buffers for 40 clients: receives find the buffer ring
//     empty (ENOBUFS ends a multishot receive) and are re-armed once the
//     pass has given buffers back;
//   - send mappings of one slot for 20 clients: the loop maps more while
//     sends are in flight, and (stopRing checks) unmaps them afterwards;
//   - the same, with mapping more slots failing: connections wait for the
//     one slot in turn.
func TestRingResourcesRunOut(t *testing.T) {
	failMapping := func(int, int) (*uring.Arena, error) { return nil, errors.New("mapping refused by the test") }
	for _, tc := range []struct {
		name      string
		ring      RingOptions
		mapChunk  func(slots, size int) (*uring.Arena, error) // nil: the default
		clients   int
		shortages func(ringTotals) int
	}{
		{"receive buffers", RingOptions{Buffers: 2, BufferSize: 512}, nil, 40, func(r ringTotals) int { return r.starvations }},
		{"send slots", RingOptions{SendSlots: 1, SendSlotSize: 1 << 10}, nil, 20, func(r ringTotals) int { return r.grown }},
		{"send slots unmappable", RingOptions{SendSlots: 1, SendSlotSize: 1 << 10}, failMapping, 20, func(r ringTotals) int { return r.slotWaits }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ringOptions(t)
			o.ring = tc.ring
			s, served := serve(t, echoer{}, o)
			if tc.mapChunk != nil {
				for _, l := range s.loops {
					call(l, func() { ringOf(l).arena.mapChunk = tc.mapChunk })
				}
			}
			echoStorm(t, s, tc.clients, 128<<10)
			if err := echoCheck(dial(t, s), pattern(64<<10, 99), 64<<10, 0); err != nil {
				t.Fatalf("after the storm: %v", err)
			}
			n := tc.shortages(stopRing(t, s, served))
			t.Logf("%s ran out %d times", tc.name, n)
			if n == 0 {
				t.Fatalf("%s never ran out: the test did not exercise the path", tc.name)
			}
		})
	}
}

// TestRingPausedReadingKeepsOrder: with a 64 KiB outbound bound, a client
// that sends 4 MiB and reads slowly makes the loop pause reading (the
// multishot receive is cancelled; what the kernel had already read is
// held) many times. No byte is lost, duplicated or reordered, and the
// connection never overflows.
func TestRingPausedReadingKeepsOrder(t *testing.T) {
	o := ringOptions(t)
	o.MaxPending = 64 << 10 // reading pauses over 32 KiB, resumes under 8 KiB
	s, served := serve(t, echoer{}, o)
	c := dial(t, s)
	if err := echoCheck(c, pattern(4<<20, 3), 16<<10, 50*time.Microsecond); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Overflows != 0 {
		t.Fatalf("%d overflows, want backpressure instead", st.Overflows)
	}
	c.Close()
	stopRing(t, s, served)
}

// filler is the handler of TestRingResumesWhileOthersWrite: "fill" queues
// 700 KiB of lines and then "filled", "ping" answers "pong". Each session's
// connection goes to opened.
type filler struct{ opened chan *conn }

func (h filler) Open(c handler.Conn) handler.Session {
	h.opened <- c.(*conn)
	return fillSession{c}
}

type fillSession struct{ c handler.Conn }

func (s fillSession) Data(in []byte) (int, error) {
	used := 0
	for {
		i := bytes.IndexByte(in[used:], '\n')
		if i < 0 {
			return used, nil
		}
		switch string(in[used : used+i]) {
		case "fill":
			s.c.Write(append(bytes.Repeat([]byte(strings.Repeat("x", 63)+"\n"), 700<<10/64), "filled\n"...))
		case "ping":
			s.c.Write([]byte("pong\n"))
		}
		used += i + 1
	}
}

func (fillSession) Closed(error) {}

// TestRingResumesWhileOthersWrite: a connection whose reading paused at
// the high-water mark resumes once its buffer is under the low-water mark,
// even if it never empties because another goroutine keeps writing to it
// (a chat member in a busy room). The ObserveQueue hook stands in for that
// writer: whenever the loop takes a batch for the connection, one more
// line is queued, so a send never completes with nothing left behind it.
// The client reads everything all along; after the 700 KiB fill (over the
// 512 KiB high-water mark) has arrived, a ping must be read and answered
// while the other writer goes on. Before the fix, only a short send or an
// empty buffer resumed reading, and the ping was never read.
func TestRingResumesWhileOthersWrite(t *testing.T) {
	o := ringOptions(t)
	o.Loops = 1
	var (
		target  atomic.Pointer[conn]
		maxTook atomic.Int64
	)
	line := []byte(strings.Repeat("y", 63) + "\n")
	o.ObserveQueue = func(n int) { // runs on the loop
		if c := target.Load(); c != nil {
			if int64(n) > maxTook.Load() {
				maxTook.Store(int64(n))
			}
			c.Write(line)
		}
	}
	h := filler{opened: make(chan *conn, 1)}
	s := start(t, h, o)
	cl := dial(t, s)
	c := <-h.opened
	target.Store(c)
	defer target.Store(nil) // the chain stops before the server does
	c.Write(line)           // starts the chain

	events := make(chan string, 2)
	go func() {
		r := bufio.NewReader(cl)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if l == "filled\n" || l == "pong\n" {
				events <- l
			}
		}
	}()
	expect := func(want string, within time.Duration) {
		t.Helper()
		select {
		case got := <-events:
			if got != want+"\n" {
				t.Fatalf("got %q, want %q", got, want)
			}
		case <-time.After(within):
			t.Fatalf("no %q within %v while another writer kept writing: reading stayed paused", want, within)
		}
	}
	io.WriteString(cl, "fill\n")
	expect("filled", ioTimeout)
	if hw := serving.HighWater(o.Config); maxTook.Load() <= int64(hw) {
		t.Fatalf("the largest batch was %d bytes, not over the high-water mark %d: reading never paused", maxTook.Load(), hw)
	}
	// A liveness bound, not a performance one: without the fix the pong
	// never comes while the other writer writes.
	io.WriteString(cl, "ping\n")
	expect("pong", 5*time.Second)
}

// TestStalledPeersHoldNoOneUp: peers that stop reading keep their sends
// in flight (on io_uring, each holds a send slot until the write timeout),
// and must not delay another connection's reply. Three flooders stall
// with a 10 s write timeout and two slots per send mapping; a ping from a
// reading client must be answered well before the flooders' write
// timeout, the only thing that freed their slots before mappings grew.
// Epoll loops share no such resource and are held to the same.
func TestStalledPeersHoldNoOneUp(t *testing.T) {
	kernels(t, func(t *testing.T, o options) {
		o.Loops = 1
		o.WriteTimeout = 10 * time.Second
		o.MaxPending = 32 << 20
		o.ring = RingOptions{SendSlots: 2}
		h := newLines(t)
		s := start(t, h, o)
		const flooders = 3
		for range flooders {
			io.WriteString(dial(t, s), "flood\n") // 16 MiB, never read
			<-h.flooded
		}
		l := s.loops[0]
		wait.Eventually(t, wait.Bound, fmt.Sprintf("the %d flooders' sends stall", flooders), func() error {
			stalled := 0
			call(l, func() {
				for _, c := range l.conns {
					if c != nil && c.wantOut {
						stalled++ // a send that the full socket holds
					}
				}
			})
			if stalled < flooders {
				return fmt.Errorf("%d have", stalled)
			}
			return nil
		})
		good := dial(t, s)
		r := bufio.NewReader(good)
		sent := time.Now()
		io.WriteString(good, "ping\n")
		expectLine(t, r, "pong")
		// A behavioural bound, not a performance one: held up by the
		// stalled sends, the pong waited for their write timeout.
		if d := time.Since(sent); d >= o.WriteTimeout/2 {
			t.Fatalf("the pong took %v: held up by the stalled peers (write timeout %v)", d, o.WriteTimeout)
		}
		if rg, ok := l.drv.(*uringDriver); ok {
			var chunks int
			call(l, func() { chunks = len(rg.arena.chunks) })
			if chunks < 2 {
				t.Fatalf("%d send mapping(s) for %d stalled sends of 2 slots each: the test did not exercise growth", chunks, flooders)
			}
		}
		if len(h.closed) != 0 {
			t.Fatalf("a connection closed meanwhile: %v", <-h.closed)
		}
	})
}

// TestSendArena: the send arena maps a chunk when every slot is taken,
// hands out distinct slots (each writable over its whole size), takes
// from the lowest chunk with room, and unmaps only the highest chunk, only
// when it is empty and the others keep half a chunk free; the first chunk
// stays.
func TestSendArena(t *testing.T) {
	const per, size = 4, 64
	a, err := newSendArena(per, size)
	if err != nil {
		t.Fatal(err)
	}
	defer a.free()
	seen := map[int]bool{}
	var slots []int
	for k := range 2*per + 1 {
		i, err := a.get()
		if err != nil {
			t.Fatal(err)
		}
		if seen[i] {
			t.Fatalf("slot %d handed out twice", i)
		}
		seen[i] = true
		slots = append(slots, i)
		p := a.slot(i)
		if len(p) != size {
			t.Fatalf("slot %d is %d bytes, want %d", i, len(p), size)
		}
		for j := range p {
			p[j] = byte(k)
		}
	}
	for k, i := range slots {
		if p := a.slot(i); p[0] != byte(k) || p[size-1] != byte(k) {
			t.Fatalf("slot %d was overwritten by another", i)
		}
	}
	if len(a.chunks) != 3 || a.available() != per-1 {
		t.Fatalf("%d chunks, %d free; want 3, %d", len(a.chunks), a.available(), per-1)
	}
	a.put(slots[2*per]) // the third chunk is empty, the others full: it stays
	if len(a.chunks) != 3 {
		t.Fatalf("%d chunks: the empty top chunk went without room below", len(a.chunks))
	}
	a.put(slots[per]) // one free below: not yet half a chunk
	if len(a.chunks) != 3 {
		t.Fatalf("%d chunks, want 3 while less than half a chunk is free below", len(a.chunks))
	}
	a.put(slots[per+1]) // two free below: the empty top chunk goes
	if len(a.chunks) != 2 {
		t.Fatalf("%d chunks, want 2: the empty top one unmapped", len(a.chunks))
	}
	i, _ := a.get() // from the second chunk, not a new third
	if i/per != 1 || len(a.chunks) != 2 {
		t.Fatalf("slot %d (%d chunks): want one from the second chunk", i, len(a.chunks))
	}
	rest := append([]int{i, slots[per+2], slots[per+3]}, slots[:per]...)
	for _, j := range rest {
		a.put(j)
	}
	if len(a.chunks) != 1 || a.used != 0 {
		t.Fatalf("after every slot came back: %d chunks, %d used; want the first chunk only", len(a.chunks), a.used)
	}
}
