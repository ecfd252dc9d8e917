package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/backoff"
	"github.com/tcplab/tcplab/internal/drain"
	"github.com/tcplab/tcplab/internal/listener"
)

// prefork runs --workers worker processes (this program re-executed) that
// all accept on one listening socket, which the parent binds and every
// worker inherits on ChildFD. Each worker serves its connections with a
// goroutine each, like the goroutine model. The parent accepts nothing: it
// supervises, restarting a worker that dies (at once if it had run a
// while, with backoff if it keeps dying young), and on Shutdown it sends
// every worker SIGTERM (each drains its connections and exits), waits, and
// kills what is left at the deadline.
//
// One inherited socket rather than an SO_REUSEPORT socket per worker: all
// workers take from one accept queue, so a connection waiting in it
// survives the death of any worker and is served by another, which is what
// keeps the service answering while a worker restarts. With one socket per
// worker the kernel would hash connections to the dead worker's socket and
// reset those in its queue. The price is that every idle worker is woken
// for each new connection and only one wins the accept.
func init() {
	Register(Model{
		Name:    "prefork",
		Summary: "worker processes sharing one inherited listening socket, supervised",
		Limits:  "--workers processes (default NumCPU), each a goroutine per connection; no connection cap",
		Options: []string{"workers"},
		TLS:     true,
		New:     newPrefork,
		Child:   preforkChild,
	})
}

// workerStable is how long a worker must have run for its death to be
// restarted at once; a worker that dies sooner is restarted after a
// growing delay, so a worker that cannot start does not spin.
const workerStable = time.Second

// preforkServer is the parent: it binds and supervises.
type preforkServer struct {
	cfg   Config
	addr  net.Addr
	sock  *os.File // the listening socket the workers inherit
	group *procGroup

	done      chan struct{} // closed when Shutdown starts
	shutOnce  sync.Once
	started   atomic.Bool
	serveDone chan struct{}
	slots     sync.WaitGroup
}

func newPrefork(_ handler.Handler, cfg Config) (Server, error) {
	g, err := newProcGroup("prefork", cfg)
	if err != nil {
		return nil, err
	}
	fd, addr, err := listener.FD(cfg.Addr, listener.Options{Backlog: cfg.Backlog, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	return &preforkServer{
		cfg:  cfg,
		addr: addr,
		// os.NewFile on a non-blocking descriptor leaves it non-blocking,
		// even when exec hands it on: the workers share its file
		// description, and one switched to blocking mode would leave a
		// worker's thread stuck in accept.
		sock:      os.NewFile(uintptr(fd), "prefork listener "+addr.String()),
		group:     g,
		done:      make(chan struct{}),
		serveDone: make(chan struct{}),
	}, nil
}

func (s *preforkServer) Addr() net.Addr { return s.addr }

// Stats sums what the workers report (childstats.go): the parent itself
// accepts nothing.
func (s *preforkServer) Stats() Stats { return s.group.totals.sum(true) }

// Serve starts the workers and keeps --workers of them running until
// Shutdown.
func (s *preforkServer) Serve() error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("engine: Serve called twice")
	}
	defer close(s.serveDone)
	select {
	case <-s.done:
		return nil
	default:
	}
	for slot := range s.cfg.Workers {
		s.slots.Go(func() { s.supervise(slot) })
	}
	s.slots.Wait()
	return nil
}

// supervise keeps one worker slot filled until Shutdown.
func (s *preforkServer) supervise(slot int) {
	log := s.cfg.Logger
	var bo backoff.Backoff
	for {
		p, err := s.group.start(s.sock)
		if err == nil {
			<-p.done
		}
		select {
		case <-s.done:
			return
		default:
		}
		if err != nil {
			log.Warn("prefork: cannot start a worker", "slot", slot, "err", err)
		} else {
			log.Warn("prefork: worker died; restarting it", "slot", slot, "pid", p.cmd.Process.Pid, "exit", p.err)
			if time.Since(p.started) >= workerStable {
				bo.Reset()
				continue
			}
		}
		wait, _ := bo.Fail()
		select {
		case <-time.After(wait):
		case <-s.done:
			return
		}
	}
}

// Shutdown closes the parent's copy of the socket, stops the workers
// (SIGTERM: each closes its copy, drains and exits), and kills any still
// running at the deadline.
func (s *preforkServer) Shutdown(ctx context.Context) error {
	s.shutOnce.Do(func() { close(s.done) })
	// The parent's copy of the socket goes first: once each worker has
	// closed its own on SIGTERM, the socket stops listening, and a new
	// connection is refused rather than left in a backlog no one accepts
	// from until the drain ends.
	s.group.refuse()
	s.sock.Close()
	inTime := s.group.stop(ctx, drain.Deadline(ctx, s.cfg.DrainTimeout))
	if s.started.Load() {
		<-s.serveDone
	}
	if !inTime {
		return drain.Cut(ctx, "workers still draining were killed")
	}
	return nil
}

// preforkChild is a worker: a goroutine-per-connection server on the
// inherited listening socket.
func preforkChild(h handler.Handler, cfg Config, f *os.File) (Server, error) {
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("inherited listener: %w", err)
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("inherited listener: %T is not TCP", ln)
	}
	s := newBlockingServerOn(h, cfg, []*net.TCPListener{tl})
	s.dispatch = s.goroutinePerConn
	return s, nil
}
