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
	"github.com/tcplab/tcplab/internal/drain"
	"github.com/tcplab/tcplab/internal/serving"
)

// fork starts a process per connection, like a classic inetd or pre-thread
// Unix server: the parent accepts, re-executes this program with the
// connection on ChildFD, and closes its own copy; the child serves that one
// connection (the ordinary stream loop) and exits when it ends. The parent
// reaps every child, so none is left a zombie, and a child dies with its
// parent (Pdeathsig), so none is left an orphan. A connection costs a
// whole process: an exec, a Go runtime start-up and several MiB of memory,
// before the first byte is served. Past --max-procs live children, new
// connections are refused (handler.ErrServerFull); a failed process start
// (out of memory or of processes) is refused the same way.
func init() {
	Register(Model{
		Name:    "fork",
		Summary: "one process per connection (this program re-executed)",
		Limits:  fmt.Sprintf("--max-procs live children, one per connection (default %d); past it refused", DefaultMaxProcs),
		Options: []string{"max-procs"},
		TLS:     true,
		New:     newFork,
		Child:   forkChild,
	})
}

func newFork(h handler.Handler, cfg Config) (Server, error) {
	g, err := newProcGroup("fork", cfg)
	if err != nil {
		return nil, err
	}
	s, err := newBlockingServer(h, cfg, 1)
	if err != nil {
		return nil, err
	}
	s.children = &g.totals
	var releasers sync.WaitGroup // per-address slots waiting for their child
	// Stats.Open counts live children: one connection each.
	g.exited = func(p *proc) {
		s.stats.Open.Add(-1)
		if p.err != nil {
			cfg.Logger.Warn("fork: child process failed", "pid", p.cmd.Process.Pid, "exit", p.err)
		}
	}
	s.dispatch = func(nc net.Conn) {
		if s.stats.Open.Load() >= int64(cfg.MaxProcs) {
			s.set.refuse(nc, handler.ErrServerFull)
			return
		}
		s.stats.Open.Add(1)
		p, err := forkConn(g, nc)
		if err != nil {
			s.stats.Open.Add(-1)
			if !errors.Is(err, errStopping) {
				cfg.Logger.Warn("fork: cannot start a child; connection refused", "err", err)
			}
			s.set.refuse(nc, handler.ErrServerFull)
			return
		}
		s.stats.Accepted.Add(1)
		a, limited := nc.(*admittedConn)
		if !limited {
			nc.Close() // the child has its own copy
			return
		}
		// The connection counts against its address's limit until the
		// child serving it exits.
		a.TCPConn.Close()
		releasers.Go(func() {
			<-p.done
			a.once.Do(a.release)
		})
	}
	s.wait = func(ctx context.Context, deadline time.Time) bool {
		ok := g.stop(ctx, deadline)
		releasers.Wait()
		return ok
	}
	return s, nil
}

// forkConn starts a child serving nc.
func forkConn(g *procGroup, nc net.Conn) (*proc, error) {
	tc, ok := tcpConn(nc)
	if !ok {
		return nil, fmt.Errorf("fork: %T is not a TCP connection", nc)
	}
	f, err := tc.File()
	if err != nil {
		return nil, fmt.Errorf("fork: %w", err)
	}
	defer f.Close()
	return g.start(f)
}

// forkChild serves, in a child, the one connection it inherited.
func forkChild(h handler.Handler, cfg Config, f *os.File) (Server, error) {
	nc, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("inherited connection: %w", err)
	}
	s := &connServer{nc: nc, cfg: cfg}
	s.set = newStreamSet(h, cfg, &s.stats)
	return s, nil
}

// connServer serves a single connection: a fork child.
type connServer struct {
	nc      net.Conn
	cfg     Config
	stats   serving.Counters
	set     *streamSet
	started atomic.Bool
}

func (s *connServer) Addr() net.Addr { return s.nc.LocalAddr() }
func (s *connServer) Stats() Stats   { return s.stats.Snapshot() }

// Serve serves the connection to its end, then returns nil.
func (s *connServer) Serve() error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("engine: Serve called twice")
	}
	if !s.set.begin() {
		s.nc.Close()
		return nil
	}
	s.set.serve(s.nc)
	return nil
}

// Shutdown closes the connection as every model does (quiesce, farewell,
// drain until the deadline).
func (s *connServer) Shutdown(ctx context.Context) error {
	if !s.set.shutdown(ctx, drain.Deadline(ctx, s.cfg.DrainTimeout)) {
		return drain.Cut(ctx, "drain cut short")
	}
	return nil
}
