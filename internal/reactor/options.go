package reactor

import "github.com/tcplab/tcplab/internal/serving"

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
