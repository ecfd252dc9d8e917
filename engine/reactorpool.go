package engine

import (
	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/reactor"
)

// reactor-pool is the seed's "listener reads, workers process": the epoll
// loops of reactor do all the I/O, and the handler runs on a fixed pool of
// --workers goroutines, so a CPU-heavy handler does not stall a loop. A
// connection's events run on at most one worker at a time, in order.
func init() {
	Register(Model{
		Name:    "reactor-pool",
		Summary: "epoll event loops (--loops) do the I/O; handlers run on a worker pool (--workers)",
		Limits:  "no cap beyond memory and file descriptors; out of descriptors, new connections are refused",
		Options: []string{"listeners", "loops", "balance", "workers", "offload-workers"},
		TLS:     true,
		New: func(h handler.Handler, cfg Config) (Server, error) {
			return newLoops(h, cfg, reactor.ReactorPool)
		},
	})
}
