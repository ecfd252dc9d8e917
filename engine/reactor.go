package engine

import (
	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/admit"
	"github.com/tcplab/tcplab/internal/reactor"
)

// reactor runs --loops epoll event loops, each on its own locked OS
// thread, with no goroutine per connection: a loop reads a connection,
// runs the session's Data on the loop itself and writes the reply inline.
// The machinery lives in internal/reactor; docs/architecture.md describes
// it.
func init() {
	Register(Model{
		Name:    "reactor",
		Summary: "epoll event loops (--loops) on locked threads; handlers run on the loops",
		Limits:  "no cap beyond memory and file descriptors; out of descriptors, new connections are refused",
		Options: []string{"listeners", "loops", "balance"},
		New: func(h handler.Handler, cfg Config) (Server, error) {
			return newReactor(h, cfg, 0)
		},
	})
}

// newReactor starts the event-loop machinery for reactor (workers 0) and
// reactor-pool (handler calls on workers).
func newReactor(h handler.Handler, cfg Config, workers int) (Server, error) {
	o := loopOptions(cfg)
	o.Workers = workers
	return newLoops(h, o)
}

// loopOptions are the event loops' options from cfg.
func loopOptions(cfg Config) reactor.Options {
	return reactor.Options{
		Addr:         cfg.Addr,
		Backlog:      cfg.Backlog,
		Listeners:    cfg.Listeners,
		Loops:        cfg.Loops,
		Balance:      cfg.Balance,
		MaxPending:   cfg.MaxPending,
		MaxInbound:   cfg.MaxInbound,
		HighWater:    cfg.highWater(),
		LowWater:     cfg.lowWater(),
		WriteTimeout: cfg.WriteTimeout,
		DrainTimeout: cfg.DrainTimeout,
		Logger:       cfg.Logger,
		Limiter:      admit.New(cfg.admitOptions()),
		FrameTimeout: cfg.FrameTimeout,
		ObserveQueue: cfg.ObserveQueue,
	}
}

// newLoops starts event loops (epoll or io_uring) with o.
func newLoops(h handler.Handler, o reactor.Options) (Server, error) {
	srv, err := reactor.New(h, o)
	if err != nil {
		return nil, err
	}
	return reactorServer{srv}, nil
}

// reactorServer adapts reactor.Server to the engine's Server.
type reactorServer struct{ *reactor.Server }

func (s reactorServer) Stats() Stats {
	st := s.Server.Stats()
	return Stats{
		Accepted: st.Accepted, Open: st.Open, Refused: st.Refused, RefusedBy: st.RefusedBy,
		AcceptErrors: st.AcceptErrors, Overflows: st.Overflows, BytesIn: st.BytesIn, BytesOut: st.BytesOut,
		FrameTimeouts: st.FrameTimeouts, WriteTimeouts: st.WriteTimeouts,
	}
}
