// Package reactor is the event-loop machinery under the reactor,
// reactor-pool and uring models: N event loops, each on its own locked OS
// thread, serving non-blocking sockets with no goroutine per connection.
//
// Three parts, each in its own files (docs/architecture.md has the long
// form):
//
//   - The loop core (loop.go, conn_io.go, timers.go): tasks posted from
//     other goroutines, timers, handing input to the dispatcher, output
//     and its backpressure, the close protocol and the two-phase
//     shutdown. It knows no kernel interface.
//   - The I/O drivers (driver.go): epoll (driver_epoll.go) for reactor and
//     reactor-pool, io_uring (driver_uring.go, sendarena.go) for uring.
//   - The dispatchers (dispatch.go): handler calls on the loop (inline:
//     reactor, uring) or on a pool of workers (pool.go: reactor-pool).
//
// What they share:
//
//   - Bytes the session leaves unconsumed are kept per connection (bounded
//     by MaxInbound); a connection with none keeps no input buffer.
//   - Writes go to the connection's bounded internal/outbuf buffer. A reply
//     written from Data on the loop is flushed inline after Data returns;
//     a write from another goroutine posts the connection to its loop.
//   - Backpressure: above the high-water mark the loop stops reading the
//     connection until its buffer drains under the low-water mark.
//   - Cross-goroutine messages reach a loop through a queue; the driver is
//     woken only when the loop sleeps, so a burst costs one wake-up.
package reactor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/admit"
	"github.com/tcplab/tcplab/internal/drain"
	"github.com/tcplab/tcplab/internal/listener"
	"github.com/tcplab/tcplab/internal/outbuf"
	"github.com/tcplab/tcplab/internal/serving"
)

// Model is what a Server runs: which I/O driver its loops use, and where
// the handler's calls run.
type Model int

const (
	// Reactor runs epoll loops, with the handler's calls on the loops.
	Reactor Model = iota
	// ReactorPool runs epoll loops, with the handler's calls on
	// Config.Workers goroutines.
	ReactorPool
	// Uring runs io_uring loops, with the handler's calls on the loops.
	// New fails with an error wrapping uring.ErrUnavailable when the
	// kernel refuses io_uring.
	Uring
)

// Balance policies: how connections accepted on a shared listener are
// spread over the loops (Config.Balance).
const (
	RoundRobin = serving.RoundRobin
	LeastConns = serving.LeastConns
)

// Server is a set of event loops serving one handler.
type Server struct {
	h     handler.Handler
	cfg   serving.Config
	model Model
	ring  RingOptions // io_uring loops' sizes, defaults filled in
	addr  *net.TCPAddr
	local netip.AddrPort // every connection's local address, unless bound to a wildcard
	chunk int            // most fresh bytes passed to one Data call
	loops []*loop
	// shared is set when one listener feeds every loop: its owner places
	// each connection by Balance.
	shared bool
	rr     atomic.Uint64
	disp   dispatcher // where handler calls run: inline, or a pool
	work   *workers   // where offloaded functions run (handler.Offload)

	// highWater and lowWater are Config's backpressure marks
	// (serving.HighWater).
	highWater, lowWater int
	limiter             *admit.Limiter // nil: no per-address limits
	tls                 *tlsServer     // the TLS layer (tls.go); nil without TLS

	stats serving.Counters // the loops keep the byte counts
	quiet atomic.Bool      // shutdown phase 1 done: no Data starts

	// spare is a descriptor held in reserve: out of descriptors, the
	// server closes it to accept one connection and refuse it, rather
	// than leave clients hanging in the backlog.
	spareMu  sync.Mutex
	spare    int
	refusing atomic.Bool

	mu      sync.Mutex
	serving bool
	shut    bool
	loopsWG sync.WaitGroup
	done    chan struct{} // closed when Shutdown has finished
	fatal   chan error
}

// New binds the listeners and prepares the loops of model m; Serve starts
// them. cfg must have its defaults filled in (serving.Config.WithDefaults).
func New(h handler.Handler, cfg serving.Config, m Model) (*Server, error) {
	return newServer(h, cfg, m, RingOptions{})
}

// newServer is New with the io_uring loops' sizes (zero fields: the
// defaults), which only tests change.
func newServer(h handler.Handler, cfg serving.Config, m Model, ring RingOptions) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("reactor: %w", err)
	}
	hw := serving.HighWater(cfg)
	chunk := max(1, min(readBufSize, hw))
	ring, err := ring.withDefaults(chunk)
	if err != nil {
		return nil, err
	}
	fds, addr, err := listener.FDs(cfg.Addr, cfg.Listeners, listener.Options{Backlog: cfg.Backlog, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	s := &Server{
		h:         h,
		cfg:       cfg,
		model:     m,
		ring:      ring,
		addr:      addr,
		chunk:     chunk,
		shared:    len(fds) == 1 && cfg.Loops > 1,
		highWater: hw,
		lowWater:  serving.LowWater(cfg),
		limiter:   serving.Limiter(cfg),
		spare:     openSpare(),
		done:      make(chan struct{}),
		fatal:     make(chan error, 1),
		disp:      inline{},
		work:      newWorkers(cfg.OffloadWorkers),
	}
	if !addr.IP.IsUnspecified() {
		ip, _ := netip.AddrFromSlice(addr.IP)
		s.local = netip.AddrPortFrom(ip.Unmap(), uint16(addr.Port))
	}
	if m == ReactorPool {
		s.disp = newPool(s, cfg.Workers)
	}
	if conf := serving.TLSConfig(cfg); conf != nil {
		s.tls = newTLSServer(s, s.disp, conf)
		s.disp = s.tls
	}
	for range cfg.Loops {
		l, err := newLoop(s)
		if err != nil {
			s.release(fds)
			return nil, err
		}
		s.loops = append(s.loops, l)
	}
	spareP(cfg.Loops, cfg.Logger)
	for i, fd := range fds {
		l := s.loops[i%len(s.loops)]
		l.listeners = append(l.listeners, fd)
		if err := l.drv.accepting(fd, true); err != nil {
			s.release(fds)
			return nil, err
		}
	}
	return s, nil
}

// release closes everything New opened, on a failed New or a Shutdown
// before Serve.
func (s *Server) release(listeners []int) {
	for _, fd := range listeners {
		unix.Close(fd)
	}
	for _, l := range s.loops {
		l.end() // no wake-up from now on (a loop that ran has ended already)
		l.drv.release()
	}
	s.spareMu.Lock()
	if s.spare >= 0 {
		unix.Close(s.spare)
		s.spare = -1
	}
	s.spareMu.Unlock()
}

// Addr returns the bound address.
func (s *Server) Addr() net.Addr { return s.addr }

// Serve runs the loops until Shutdown, then returns nil. It returns an
// error at once if a loop fails (a listener broke); call Shutdown then.
func (s *Server) Serve() error {
	s.mu.Lock()
	if s.serving {
		s.mu.Unlock()
		return errors.New("reactor: Serve called twice")
	}
	s.serving = true
	if s.shut {
		s.mu.Unlock()
		return nil
	}
	s.disp.start()
	for _, l := range s.loops {
		s.loopsWG.Add(1)
		go l.run(s.loopsWG.Done)
	}
	s.mu.Unlock()
	select {
	case <-s.done:
		return nil
	case err := <-s.fatal:
		return err
	}
}

// fail reports a loop's fatal error to Serve (the first one wins).
func (s *Server) fail(err error) {
	select {
	case s.fatal <- err:
	default:
	}
}

// Shutdown stops the server in two phases. First every loop stops
// accepting and reading, (reactor-pool) every queued or running handler
// call finishes, and so does every offloaded function (handler.Offload),
// until the deadline; no Data runs after that, and a handler.Quiescer is
// told so. Then every connection is closed with handler.ErrShutdown:
// its farewell follows everything already written, queued bytes flush
// until ctx's deadline (or DrainTimeout), or until ctx is cancelled, and
// whatever is left is closed. It returns once the loops and workers have
// stopped (and the functions Closed offloaded have returned, until the
// deadline), with an error wrapping ctx's error (context.DeadlineExceeded
// if the drain timeout passed) if the drain was cut short, or a function
// was still running at the deadline. Such a function finishes on its own,
// and its connection's Closed follows it.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.shut {
		s.mu.Unlock()
		<-s.done
		return nil
	}
	s.shut = true
	serving := s.serving
	s.mu.Unlock()
	deadline := drain.Deadline(ctx, s.cfg.DrainTimeout)
	if !serving {
		var fds []int
		for _, l := range s.loops {
			fds = append(fds, l.listeners...)
		}
		s.release(fds)
		close(s.done)
		return nil
	}

	// Twice: after the first round no loop accepts, and the second makes
	// sure every loop has registered the connections others accepted
	// before stopping, so (reactor-pool) their Open is queued before the
	// workers are waited for.
	ack := make(chan struct{}, len(s.loops))
	for range 2 {
		for _, l := range s.loops {
			l.post(task{kind: taskQuiesce, ack: ack})
		}
		for range s.loops {
			<-ack
		}
	}
	s.disp.quiesce()
	s.quiet.Store(true)
	// What sessions offloaded before reading stopped finishes, and
	// writes, before any farewell; Data waits for none of it any more.
	offloadsCut := !s.work.wait(ctx, deadline)
	if q, ok := s.h.(handler.Quiescer); ok {
		q.Quiesced(deadline) // messages from outside still reach the connections
	}
	for _, l := range s.loops {
		l.post(task{kind: taskMarkAll, deadline: deadline, ack: ack})
	}
	for range s.loops {
		<-ack
	}
	for _, l := range s.loops {
		l.post(task{kind: taskCloseAll, deadline: deadline})
	}
	// A cancelled ctx cuts the drain: the loops close what is left at
	// once, as at the deadline.
	loopsDone, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-ctx.Done():
			for _, l := range s.loops {
				l.post(task{kind: taskCloseAll, deadline: time.Now()})
			}
		case <-loopsDone:
		}
	}()
	s.loopsWG.Wait()
	close(loopsDone)
	<-watched
	s.disp.stop()
	s.work.stop()
	cut := offloadsCut
	for _, l := range s.loops {
		cut = cut || l.cut
	}
	s.release(nil)
	close(s.done)
	if cut {
		return drain.Cut(ctx, "drain cut short")
	}
	return nil
}

// Stats returns the counters so far.
func (s *Server) Stats() serving.Stats {
	st := s.stats.Snapshot()
	for _, l := range s.loops {
		st.BytesIn += l.bytesIn.Load()
		st.BytesOut += l.bytesOut.Load()
	}
	return st
}

// place gives a connection accepted on loop from to a loop: from itself
// when each loop has its own listener, otherwise by the balance policy.
func (s *Server) place(from *loop, fd int, remote netip.AddrPort, limited bool) {
	setNoDelay(fd)
	to := from
	if s.shared {
		to = s.pick()
	}
	to.load.Add(1)
	c := &conn{l: to, fd: fd, remote: remote, local: s.local, limited: limited}
	if !c.local.IsValid() {
		c.local = localAddr(fd, &from.sa)
	}
	c.out = outbuf.New(s.cfg.MaxPending, c.notify)
	if s.tls != nil {
		s.tls.attach(c)
	}
	if to == from {
		to.register(c)
	} else {
		to.post(task{kind: taskAdd, c: c})
	}
}

// pick chooses a loop for a new connection.
func (s *Server) pick() *loop {
	if s.cfg.Balance == LeastConns {
		best := s.loops[0]
		for _, l := range s.loops[1:] {
			if l.load.Load() < best.load.Load() {
				best = l
			}
		}
		return best
	}
	return s.loops[(s.rr.Add(1)-1)%uint64(len(s.loops))]
}

// refuse accepts one pending connection on the spare descriptor, sends
// the handler's refusal and closes it. It reports false if no spare
// descriptor could be had.
func (s *Server) refuse(lfd int, sa *unix.RawSockaddrAny) bool {
	s.spareMu.Lock()
	defer s.spareMu.Unlock()
	if s.spare < 0 {
		if s.spare = openSpare(); s.spare < 0 {
			return false
		}
	}
	unix.Close(s.spare)
	fd, _, errno := rawAccept(lfd, sa)
	if errno == 0 {
		s.refuseConn(fd, handler.ErrServerFull)
		if !s.refusing.Swap(true) {
			s.cfg.Logger.Warn("reactor: out of file descriptors; refusing new connections")
		}
	}
	s.spare = openSpare()
	return errno == 0 || errno == unix.EAGAIN
}

// refuseConn turns away a connection just accepted, before Open: it
// counts the refusal (before the peer can see the close), sends the
// handler's refusal bytes, drops what the peer already sent (so the close
// is a FIN, not a reset that could cost the peer the refusal), and closes
// the socket.
func (s *Server) refuseConn(fd int, reason error) {
	s.stats.Refusal(reason)
	var msg []byte
	if r, ok := s.h.(handler.Refuser); ok {
		msg = r.Refuse(reason)
	}
	if s.tls != nil {
		s.tls.refuse(fd, msg, reason) // over TLS, or not at all
		return
	}
	if len(msg) > 0 {
		rawWrite(fd, msg)
	}
	discardInput(fd)
	unix.Close(fd)
}

// admit applies the per-address limits to a connection just accepted from
// remote. It reports whether the connection is counted against them
// (limited), or refuses it and reports ok false.
func (s *Server) admit(fd int, remote netip.AddrPort) (limited, ok bool) {
	lim := s.limiter
	if lim.Exempt(remote.Addr()) {
		return false, true
	}
	if err := lim.Admit(remote.Addr()); err != nil {
		s.refuseConn(fd, err)
		return false, false
	}
	return true, true
}

// releaseSlot gives back c's slot in the per-address limits.
func (s *Server) releaseSlot(c *conn) {
	if c.limited {
		c.limited = false
		s.limiter.Release(c.remote.Addr())
	}
}

// spareP makes sure the Go scheduler has a processor (P) more than there
// are loops. A loop waiting in epoll_wait keeps its P inside the system
// call; when no other P is idle, the runtime's monitor thread takes that P
// back after 20 µs and wakes another thread to look for work, every time
// the loop sleeps, and keeps itself polling every 20 µs. With an idle P
// there is nothing to hand the P to, and none of that happens. This is
// the one process-wide setting the reactor changes, and it only raises
// GOMAXPROCS.
func spareP(loops int, log *slog.Logger) {
	if have := runtime.GOMAXPROCS(0); have < loops+1 {
		runtime.GOMAXPROCS(loops + 1)
		log.Info("reactor: raised GOMAXPROCS so waiting loops keep their threads", "from", have, "to", loops+1)
	}
}
