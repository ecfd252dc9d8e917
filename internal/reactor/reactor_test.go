package reactor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/serving"
	"github.com/tcplab/tcplab/internal/testkit/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ioTimeout bounds every client read and write: a failure limit, not a
// performance target.
const ioTimeout = 10 * time.Second

// options are what a test serves with: the Config (embedded, so a test
// sets o.Loops), the model, the io_uring loops' sizes, and what to do to
// the server before it serves.
type options struct {
	serving.Config
	model   Model
	ring    RingOptions
	prepare func(*Server)
}

// testOptions are small, valid options on 127.0.0.1, for the reactor
// model.
func testOptions() options {
	return options{Config: serving.Config{
		Addr: "127.0.0.1:0", Backlog: 128, Listeners: 1, Loops: 2, Balance: RoundRobin,
		MaxPending: 1 << 20, MaxInbound: 1 << 20, Workers: 2,
		MaxConnsPerIP: -1, ConnRate: -1, // no per-address limits
		WriteTimeout: 10 * time.Second, DrainTimeout: 5 * time.Second,
		Logger: slog.New(slog.DiscardHandler),
	}.WithDefaults()}
}

// start serves h with o and shuts the server down when the test ends,
// checking that Serve returned nil.
func start(t *testing.T, h handler.Handler, o options) *Server {
	t.Helper()
	s, served := serve(t, h, o)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve returned %v", err)
		}
	})
	return s
}

// serve starts a server whose shutdown is the test's business; Serve's
// result arrives on the channel.
func serve(t *testing.T, h handler.Handler, o options) (*Server, <-chan error) {
	t.Helper()
	s, err := newServer(h, o.Config, o.model, o.ring)
	if err != nil {
		t.Fatal(err)
	}
	if o.prepare != nil {
		o.prepare(s)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	return s, served
}

// expectShutdownClose checks that Serve returned nil and that the session
// was closed for the shutdown.
func expectShutdownClose(t *testing.T, served <-chan error, h *lines) {
	t.Helper()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if reason := <-h.closed; !errors.Is(reason, handler.ErrShutdown) {
		t.Fatalf("Closed(%v), want %v", reason, handler.ErrShutdown)
	}
}

func dial(t *testing.T, s *Server) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr().String(), ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(ioTimeout))
	t.Cleanup(func() { c.Close() })
	return c
}

// lines is a line-oriented test handler: "ping" answers "pong", "block"
// blocks Data until release is closed (a CPU-heavy or stuck handler),
// "off" offloads a function that waits for release (handler.Offload) and
// "offpanic" one that panics, "flood" has a goroutine write 16 MiB (more
// than loopback socket buffers hold) and then signal flooded, and every
// other line is echoed. Its sessions report their close reason on
// closed, and fail the test if two Data calls of one session overlap or
// Data follows Closed. It refuses connections with "REFUSED <reason>" and
// says "BYE <reason>" on engine-initiated closes.
type lines struct {
	t       *testing.T
	release chan struct{}
	blocked chan struct{} // gets a token when Data starts blocking
	flooded chan struct{} // gets a token when a flood has queued all it writes
	closed  chan error
}

func newLines(t *testing.T) *lines {
	return &lines{t: t, release: make(chan struct{}), blocked: make(chan struct{}, 16), flooded: make(chan struct{}, 16), closed: make(chan error, 1024)}
}

func (h *lines) Open(c handler.Conn) handler.Session { return &lineSession{h: h, c: c} }

func (h *lines) Refuse(reason error) []byte { return []byte("REFUSED " + reason.Error() + "\n") }

type lineSession struct {
	h      *lines
	c      handler.Conn
	wg     sync.WaitGroup
	mu     sync.Mutex
	inData bool
	gone   bool
}

func (s *lineSession) enter() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inData || s.gone {
		s.h.t.Errorf("Data overlapping another call (%v) or after Closed (%v)", s.inData, s.gone)
	}
	s.inData = true
}

func (s *lineSession) Data(in []byte) (int, error) {
	s.enter()
	defer func() { s.mu.Lock(); s.inData = false; s.mu.Unlock() }()
	used := 0
	for {
		i := strings.IndexByte(string(in[used:]), '\n')
		if i < 0 {
			return used, nil
		}
		line := string(in[used : used+i])
		used += i + 1
		switch line {
		case "ping":
			s.c.Write([]byte("pong\n"))
		case "flood":
			s.wg.Go(func() {
				chunk := make([]byte, 64<<10)
				for range 256 {
					if s.c.Write(chunk) != nil {
						return
					}
				}
				s.h.flooded <- struct{}{}
			})
		case "block":
			s.h.blocked <- struct{}{}
			<-s.h.release
			s.c.Write([]byte("unblocked\n"))
		case "off":
			handler.Offload(s.c, func() { <-s.h.release })
			return used, nil
		case "offpanic":
			handler.Offload(s.c, func() { panic("test panic") })
			return used, nil
		default:
			s.c.Write([]byte(line + "\n"))
		}
	}
}

func (s *lineSession) Farewell(reason error) []byte { return []byte("BYE " + reason.Error() + "\n") }

func (s *lineSession) Closed(reason error) {
	s.mu.Lock()
	if s.gone || s.inData {
		s.h.t.Errorf("Closed twice (%v) or during Data (%v)", s.gone, s.inData)
	}
	s.gone = true
	s.mu.Unlock()
	s.wg.Wait() // the flood stops at its next Write
	s.h.closed <- reason
}

func expectLine(t *testing.T, r *bufio.Reader, want string) {
	t.Helper()
	got, err := r.ReadString('\n')
	if err != nil || got != want+"\n" {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

// models runs f for reactor (handlers on the loops), reactor-pool
// (handlers on workers) and uring (io_uring loops; skipped with the cause
// where the kernel refuses io_uring).
func models(t *testing.T, f func(t *testing.T, o options)) {
	for _, m := range []struct {
		name  string
		model Model
	}{{"reactor", Reactor}, {"reactor-pool", ReactorPool}, {"uring", Uring}} {
		t.Run(m.name, func(t *testing.T) {
			o := testOptions()
			o.model = m.model
			if m.model == Uring {
				skipWithoutRing(t)
			}
			f(t, o)
		})
	}
}

// kernels runs f with epoll loops and with io_uring loops (skipped with the
// cause where the kernel refuses io_uring).
func kernels(t *testing.T, f func(t *testing.T, o options)) {
	t.Run("epoll", func(t *testing.T) { f(t, testOptions()) })
	t.Run("uring", func(t *testing.T) { f(t, ringOptions(t)) })
}

func TestValidateRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(o *options)
		want   string
	}{
		{"no loops", func(o *options) { o.Loops = 0 }, "Loops 0"},
		{"negative workers", func(o *options) { o.model, o.Workers = ReactorPool, -1 }, "Workers -1"},
		{"unknown balance", func(o *options) { o.Balance = "random" }, `Balance "random"`},
		{"no outbound bound", func(o *options) { o.MaxPending = 0 }, "MaxPending 0"},
		{"no write timeout", func(o *options) { o.WriteTimeout = 0 }, "WriteTimeout 0s"},
		{"no logger", func(o *options) { o.Logger = nil }, "Logger"},
		{"ring buffers not a power of two", func(o *options) { o.model, o.ring.Buffers = Uring, 1000 }, "ring buffers 1000"},
		{"bad address", func(o *options) { o.Addr = "not-an-address" }, "not-an-address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions()
			tc.change(&o)
			s, err := newServer(newLines(t), o.Config, o.model, o.ring)
			if err == nil {
				s.Shutdown(context.Background())
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q: want one line mentioning %q", err, tc.want)
			}
		})
	}
}

func TestServeTwiceAndShutdownBeforeServe(t *testing.T) {
	kernels(t, testServeTwiceAndShutdownBeforeServe)
}

func testServeTwiceAndShutdownBeforeServe(t *testing.T, o options) {
	s := start(t, newLines(t), o)
	c := dial(t, s)
	io.WriteString(c, "ping\n")
	expectLine(t, bufio.NewReader(c), "pong") // the first Serve is running
	if err := s.Serve(); err == nil {
		t.Fatal("second Serve returned nil")
	}

	unserved, err := newServer(newLines(t), o.Config, o.model, o.ring)
	if err != nil {
		t.Fatal(err)
	}
	if err := unserved.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown before serve: %v", err)
	}
	if err := unserved.Serve(); err != nil {
		t.Fatalf("serve after shutdown: %v", err)
	}
	if _, err := net.DialTimeout("tcp", unserved.Addr().String(), time.Second); err == nil {
		t.Fatal("the listener is still open after shutdown")
	}
}

// TestWriteTimeout: a peer that never reads gets its connection closed
// once the socket has taken nothing for WriteTimeout.
func TestWriteTimeout(t *testing.T) {
	models(t, func(t *testing.T, o options) {
		o.WriteTimeout = 200 * time.Millisecond
		o.MaxPending = 32 << 20
		h := newLines(t)
		s := start(t, h, o)
		c := dial(t, s)
		io.WriteString(c, "flood\n")
		select {
		case reason := <-h.closed:
			if !errors.Is(reason, handler.ErrWriteTimeout) {
				t.Fatalf("closed with %v, want %v", reason, handler.ErrWriteTimeout)
			}
		case <-time.After(ioTimeout):
			t.Fatal("a peer that reads nothing was not timed out")
		}
	})
}

// TestBusyLoopTakesWritesWithoutWakeups: writes from another goroutine to
// connections of a loop that is busy cost no system call at all; the loop
// flushes them all when it gets to its queue, in order.
func TestBusyLoopTakesWritesWithoutWakeups(t *testing.T) {
	kernels(t, testBusyLoopTakesWritesWithoutWakeups)
}

func testBusyLoopTakesWritesWithoutWakeups(t *testing.T, o options) {
	o.Loops = 1
	var wakes *wakeCounter
	o.prepare = func(s *Server) { wakes = countWakeups(s.loops[0]) }
	h := newLines(t)
	conns := make(chan handler.Conn, 100)
	opener := handler.Func(func(c handler.Conn) handler.Session {
		conns <- c
		return h.Open(c)
	})
	s := start(t, opener, o)

	const n, msgs = 50, 200
	clients := make([]*bufio.Reader, n)
	server := make([]handler.Conn, n)
	for i := range n {
		c := dial(t, s)
		clients[i] = bufio.NewReader(c)
		server[i] = <-conns
	}
	busy := dial(t, s)
	io.WriteString(busy, "block\n")
	<-h.blocked // the only loop is inside Data now

	before := wakes.n.Load()
	for m := range msgs {
		for i := range n {
			if err := server[i].Write(fmt.Appendf(nil, "%d %d\n", i, m)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if w := wakes.n.Load() - before; w != 0 {
		t.Fatalf("%d writes to a busy loop's connections cost %d eventfd wake-ups, want 0", n*msgs, w)
	}
	close(h.release)
	for i, r := range clients {
		for m := range msgs {
			expectLine(t, r, fmt.Sprintf("%d %d", i, m))
		}
	}
	expectLine(t, bufio.NewReader(busy), "unblocked")
}

// TestSleepingLoopWakesOncePerBurst: a burst of writes from another
// goroutine wakes a sleeping loop far fewer times than it writes.
func TestSleepingLoopWakesOncePerBurst(t *testing.T) { kernels(t, testSleepingLoopWakesOncePerBurst) }

func testSleepingLoopWakesOncePerBurst(t *testing.T, o options) {
	o.Loops = 1
	var wakes *wakeCounter
	o.prepare = func(s *Server) { wakes = countWakeups(s.loops[0]) }
	conns := make(chan handler.Conn, 100)
	h := newLines(t)
	s := start(t, handler.Func(func(c handler.Conn) handler.Session {
		conns <- c
		return h.Open(c)
	}), o)
	const n, msgs = 100, 100
	clients := make([]*bufio.Reader, n)
	server := make([]handler.Conn, n)
	for i := range n {
		clients[i] = bufio.NewReader(dial(t, s))
		server[i] = <-conns
	}
	wait.Eventually(t, wait.Bound, "the loop sleeps", func() error {
		if !wakes.waiting.Load() {
			return wait.ErrNotYet
		}
		return nil
	})
	before := wakes.n.Load()
	for m := range msgs {
		for i := range n {
			server[i].Write(fmt.Appendf(nil, "%d\n", m))
		}
	}
	for _, r := range clients {
		for m := range msgs {
			expectLine(t, r, fmt.Sprint(m))
		}
	}
	w := wakes.n.Load() - before
	t.Logf("%d writes from another goroutine: %d eventfd wake-ups", n*msgs, w)
	if w < 1 || w > n*msgs/10 {
		t.Fatalf("%d writes cost %d wake-ups, want between 1 and %d", n*msgs, w, n*msgs/10)
	}
}

// TestBalance places connections over two loops from one listener. The
// first six alternate; closing the three on loop 1 then separates the
// policies: round-robin keeps alternating, least-conns fills loop 1.
func TestBalance(t *testing.T) { kernels(t, testBalance) }

func testBalance(t *testing.T, o options) {
	for _, tc := range []struct {
		balance      string
		want0, want1 int64
	}{{RoundRobin, 4, 1}, {LeastConns, 3, 2}} {
		t.Run(tc.balance, func(t *testing.T) {
			o.Balance = tc.balance
			h := newLines(t)
			s := start(t, h, o)
			var cs []net.Conn
			for range 6 {
				c := dial(t, s)
				r := bufio.NewReader(c)
				io.WriteString(c, "ping\n")
				expectLine(t, r, "pong") // placed and opened before the next dial
				cs = append(cs, c)
			}
			waitLoads(t, s, 3, 3)
			for i := 1; i < 6; i += 2 {
				cs[i].Close()
			}
			waitLoads(t, s, 3, 0)
			for range 2 {
				c := dial(t, s)
				io.WriteString(c, "ping\n")
				expectLine(t, bufio.NewReader(c), "pong")
			}
			waitLoads(t, s, tc.want0, tc.want1)
		})
	}
}

func waitLoads(t *testing.T, s *Server, want0, want1 int64) {
	t.Helper()
	wait.Eventually(t, wait.Bound, fmt.Sprintf("loops hold %d and %d connections", want0, want1), func() error {
		if l0, l1 := s.loops[0].load.Load(), s.loops[1].load.Load(); l0 != want0 || l1 != want1 {
			return fmt.Errorf("they hold %d and %d", l0, l1)
		}
		return nil
	})
}

// TestListenerPerLoop: with --listeners equal to --loops each loop owns a
// SO_REUSEPORT listener and serves what it accepts.
func TestListenerPerLoop(t *testing.T) { kernels(t, testListenerPerLoop) }

func testListenerPerLoop(t *testing.T, o options) {
	o.Listeners = 2
	s, err := newServer(newLines(t), o.Config, o.model, o.ring)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range s.loops {
		if len(l.listeners) != 1 {
			t.Fatalf("loop %d owns %d listeners, want 1", i, len(l.listeners))
		}
	}
	if s.shared {
		t.Fatal("connections would be re-placed although every loop has a listener")
	}
	s.Shutdown(context.Background())

	s = start(t, newLines(t), o)
	for range 40 {
		c := dial(t, s)
		io.WriteString(c, "ping\n")
		expectLine(t, bufio.NewReader(c), "pong")
	}
	if s.loops[0].load.Load() == 0 || s.loops[1].load.Load() == 0 {
		t.Fatalf("40 connections over two reuseport listeners all went to one loop (%d, %d)",
			s.loops[0].load.Load(), s.loops[1].load.Load())
	}
}

// TestPoolSlowHandlerDoesNotStallTheLoop: in reactor-pool a handler stuck
// in Data holds one worker; the loop and the other workers go on serving.
func TestPoolSlowHandlerDoesNotStallTheLoop(t *testing.T) {
	o := testOptions()
	o.model, o.Loops, o.Workers = ReactorPool, 1, 2
	h := newLines(t)
	s := start(t, h, o)
	slow := dial(t, s)
	io.WriteString(slow, "block\n")
	<-h.blocked
	for range 20 {
		c := dial(t, s)
		io.WriteString(c, "ping\n")
		expectLine(t, bufio.NewReader(c), "pong")
	}
	close(h.release)
	expectLine(t, bufio.NewReader(slow), "unblocked")
}

// TestPoolKeepsOrderPerConnection: many pipelined lines on many
// connections, with more workers than loops, come back in order; the
// session's checks fail the test if Data calls of one connection overlap.
func TestPoolKeepsOrderPerConnection(t *testing.T) {
	o := testOptions()
	o.model, o.Workers = ReactorPool, 4
	s := start(t, newLines(t), o)
	var wg sync.WaitGroup
	for i := range 40 {
		c := dial(t, s)
		wg.Go(func() {
			go func() {
				w := bufio.NewWriter(c)
				for m := range 500 {
					fmt.Fprintf(w, "%d-%d\n", i, m)
				}
				w.Flush()
			}()
			r := bufio.NewReader(c)
			for m := range 500 {
				got, err := r.ReadString('\n')
				if want := fmt.Sprintf("%d-%d\n", i, m); got != want || err != nil {
					t.Errorf("connection %d: got %q, %v; want %q", i, got, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestShutdownWaitsForDataThenSaysFarewell: shutdown's first phase waits
// for a Data call in progress; the reply it writes reaches the peer before
// the farewell, and the connection then ends.
func TestShutdownWaitsForDataThenSaysFarewell(t *testing.T) {
	models(t, func(t *testing.T, o options) {
		h := newLines(t)
		s, served := serve(t, h, o)
		c := dial(t, s)
		io.WriteString(c, "block\n")
		<-h.blocked
		done := make(chan error, 1)
		go func() { done <- s.Shutdown(context.Background()) }()
		select {
		case err := <-done:
			t.Fatalf("shutdown returned (%v) while Data was still running", err)
		case <-time.After(50 * time.Millisecond):
		}
		close(h.release)
		r := bufio.NewReader(c)
		expectLine(t, r, "unblocked")
		expectLine(t, r, "BYE "+handler.ErrShutdown.Error())
		if _, err := r.ReadByte(); err != io.EOF {
			t.Fatalf("after the farewell: %v, want EOF", err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		expectShutdownClose(t, served, h)
	})
}

// TestShutdownCutsTheDrainAtTheDeadline: a peer that reads nothing cannot
// hold shutdown past its context's deadline.
func TestShutdownCutsTheDrainAtTheDeadline(t *testing.T) {
	models(t, func(t *testing.T, o options) {
		o.MaxPending = 32 << 20
		h := newLines(t)
		s, served := serve(t, h, o)
		c := dial(t, s)
		io.WriteString(c, "flood\n")
		<-h.flooded // 16 MiB queued: more than the socket takes
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("shutdown = %v, want the drain cut short", err)
		}
		expectShutdownClose(t, served, h)
	})
}

// quiescing is a lines handler that is also a handler.Quiescer.
type quiescing struct {
	*lines
	quiesced chan int // how many sessions had closed when Quiesced ran
}

func (h quiescing) Quiesced(time.Time) { h.quiesced <- len(h.closed) }

// TestShutdownTellsAQuiescer: Shutdown calls Quiesced once, after reading
// stopped and before any connection is closed, on both kernels.
func TestShutdownTellsAQuiescer(t *testing.T) {
	kernels(t, func(t *testing.T, o options) {
		h := quiescing{newLines(t), make(chan int, 2)}
		s, served := serve(t, h, o)
		c := dial(t, s)
		io.WriteString(c, "ping\n")
		r := bufio.NewReader(c)
		expectLine(t, r, "pong")
		if err := s.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		expectShutdownClose(t, served, h.lines)
		if len(h.quiesced) != 1 {
			t.Fatalf("Quiesced ran %d times, want once", len(h.quiesced))
		}
		if closed := <-h.quiesced; closed != 0 {
			t.Fatalf("Quiesced ran after %d sessions closed, want before any", closed)
		}
		expectLine(t, r, "BYE "+handler.ErrShutdown.Error())
	})
}

// serverSide returns a duplicate of the server side's descriptor of a
// fresh loopback TCP connection, and the client side, which the test
// closes at its end.
func serverSide(t *testing.T) (int, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.DialTimeout("tcp", ln.Addr().String(), ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	raw, err := srv.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd, derr := -1, error(nil)
	if err := raw.Control(func(s uintptr) { fd, derr = unix.Dup(int(s)) }); err != nil || derr != nil {
		t.Fatal(err, derr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	return fd, client
}

// TestStaleLingerTimerSparesALaterLinger: an epoll loop's lingering close
// ends at its own deadline, not at the deadline of an earlier linger of a
// socket that had the same descriptor number. On the loop: one socket
// lingers and its linger ends (as when its peer closes); its number goes
// to another socket (dup3, so no other descriptor can take it meanwhile),
// which lingers a second later on the loop's clock; the first linger's
// timer, due by then, fires. The second socket must still be lingering.
// Before lingers had generations, that timer closed it early.
func TestStaleLingerTimerSparesALaterLinger(t *testing.T) {
	o := testOptions()
	o.Loops = 1
	s := start(t, newLines(t), o)
	l := s.loops[0]
	d := l.drv.(*epollDriver)
	first, _ := serverSide(t)
	second, _ := serverSide(t)
	var lingered bool
	call(l, func() {
		fd := first
		d.linger(fd)
		delete(d.lingering, fd) // the first linger ends, as endLinger would, but keeps the number
		if err := unix.Dup3(second, fd, unix.O_CLOEXEC); err != nil {
			t.Errorf("dup3: %v", err)
		}
		unix.Close(second)
		l.epoch = l.epoch.Add(-time.Second) // the loop's clock moves on past the first deadline
		d.linger(fd)
		d.expireLingers(l.now())
		_, lingered = d.lingering[fd]
		if lingered {
			d.endLinger(fd)
		}
	})
	if !lingered {
		t.Fatal("the first linger's timer ended a later linger of the same descriptor number")
	}
}

// TestConnFitsItsSizeClass: an idle connection's cost is mostly its conn,
// which Go allocates in a size class of 320 bytes while it fits: a field
// that takes it past 320 costs every connection 32 bytes more (the next
// class is 352), so put it where padding is, or measure the capacity test.
func TestConnFitsItsSizeClass(t *testing.T) {
	if size := unsafe.Sizeof(conn{}); size > 320 {
		t.Errorf("conn is %d bytes, past the 320-byte size class", size)
	}
}
