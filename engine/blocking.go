package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/backoff"
	"github.com/tcplab/tcplab/internal/drain"
	"github.com/tcplab/tcplab/internal/listener"
	"github.com/tcplab/tcplab/internal/serving"
)

// blockingServer is the Server of every model that accepts through Go's
// net.Listener and serves connections with blocking reads (streamSet). A
// model supplies only its dispatch policy: what happens to an accepted
// connection (served inline, on a new goroutine, on a new OS thread, on a
// queue for workers).
type blockingServer struct {
	cfg   Config
	lns   []*net.TCPListener
	stats serving.Counters
	set   *streamSet
	// children, under fork, holds what the child processes report: the
	// traffic counters, which only they see.
	children *childTotals

	// dispatch takes an accepted connection. It must call set.begin
	// before serving and set.serve to serve, or refuse it.
	dispatch func(nc net.Conn)
	// wait, if set, runs at the end of Shutdown, once every connection and
	// every accept loop has ended, to wait for the model's own goroutines
	// and processes until deadline (or ctx is done). It reports false if it had to cut
	// them short.
	wait func(ctx context.Context, deadline time.Time) bool

	done      chan struct{} // closed when Shutdown starts
	shutOnce  sync.Once
	started   atomic.Bool
	serveDone chan struct{}
}

// newBlockingServer binds listeners listeners on cfg.Addr.
func newBlockingServer(h handler.Handler, cfg Config, listeners int) (*blockingServer, error) {
	lns, err := listener.ListenN(cfg.Addr, listeners, listener.Options{Backlog: cfg.Backlog, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	return newBlockingServerOn(h, cfg, lns), nil
}

// newBlockingServerOn serves listeners that are already bound (a prefork
// worker's inherited socket).
func newBlockingServerOn(h handler.Handler, cfg Config, lns []*net.TCPListener) *blockingServer {
	s := &blockingServer{
		cfg:       cfg,
		lns:       lns,
		done:      make(chan struct{}),
		serveDone: make(chan struct{}),
	}
	s.set = newStreamSet(h, cfg, &s.stats)
	return s
}

func (s *blockingServer) Addr() net.Addr { return s.lns[0].Addr() }
func (s *blockingServer) Stats() Stats {
	st := s.stats.Snapshot()
	if s.children != nil {
		addStats(&st, s.children.sum(false), false)
	}
	return st
}

func (s *blockingServer) Serve() error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("engine: Serve called twice")
	}
	defer close(s.serveDone)
	errs := make(chan error, len(s.lns))
	for _, ln := range s.lns {
		go func() { errs <- s.acceptLoop(ln) }()
	}
	var err error
	for range s.lns {
		if e := <-errs; e != nil && err == nil {
			err = e
			s.closeListeners() // one broken listener stops the server
		}
	}
	return err
}

func (s *blockingServer) closeListeners() {
	for _, ln := range s.lns {
		ln.Close()
	}
}

// acceptLoop accepts until the listener closes, backing off on temporary
// errors such as EMFILE.
func (s *blockingServer) acceptLoop(ln *net.TCPListener) error {
	var bo backoff.Backoff
	var fails int // accept errors in this episode
	log := s.cfg.Logger
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if !backoff.Retryable(err) {
				return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
			}
			s.stats.AcceptErrors.Add(1)
			fails++
			wait, first := bo.Fail()
			if first {
				log.Warn("accept failing; backing off", "addr", ln.Addr(), "err", err)
			}
			select {
			case <-time.After(wait):
			case <-s.done:
				return nil
			}
			continue
		}
		if bo.Reset() {
			log.Info("accept recovered", "addr", ln.Addr(), "failures", fails)
			fails = 0
		}
		if nc, ok := s.set.admit(nc); ok {
			s.dispatch(nc)
		}
	}
}

func (s *blockingServer) Shutdown(ctx context.Context) error {
	s.shutOnce.Do(func() { close(s.done) })
	s.closeListeners()
	deadline := drain.Deadline(ctx, s.cfg.DrainTimeout)
	drained := s.set.shutdown(ctx, deadline)
	if s.started.Load() && !s.set.awaitGoroutines(ctx, deadline, func() { <-s.serveDone }) {
		drained = false // seq's accept loop runs an offloaded function still
	}
	if s.wait != nil && !s.wait(ctx, deadline) {
		drained = false
	}
	if r := s.set.tlsRefusals; r != nil {
		r.Wait()
	}
	if !drained {
		return drain.Cut(ctx, "drain cut short")
	}
	return nil
}
