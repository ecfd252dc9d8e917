package engine

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/tcplab/tcplab/handler"
)

// pool is a fixed set of --workers goroutines fed by a bounded queue of
// accepted connections (--queue). A worker serves one connection to its
// end before it takes the next, so with more live clients than workers the
// rest wait in the queue, connected but unanswered, until a worker frees;
// a long-lived client holds its worker for as long as it stays. Memory is
// bounded by workers + queue connections. When the queue is full, the
// accept loop refuses the new connection at once (handler.ErrServerFull,
// counted in Stats.Refused) rather than let it wait without bound.
// Connections still queued at shutdown are refused with
// handler.ErrShutdown.
func init() {
	Register(Model{
		Name:    "pool",
		Summary: "fixed worker goroutines and a bounded queue of accepted connections",
		Limits:  fmt.Sprintf("--workers served at once (default NumCPU), --queue waiting (default %d); past both refused", DefaultQueue),
		Options: []string{"workers", "queue"},
		TLS:     true,
		// A worker serves one connection to its end.
		Concurrency: func(cfg Config) int { return cfg.Workers },
		New: func(h handler.Handler, cfg Config) (Server, error) {
			s, err := newBlockingServer(h, cfg, 1)
			if err != nil {
				return nil, err
			}
			queue := make(chan net.Conn, cfg.Queue)
			var workers sync.WaitGroup
			for range cfg.Workers {
				workers.Go(func() {
					for nc := range queue {
						if !s.set.begin() {
							s.set.refuse(nc, handler.ErrShutdown)
							continue
						}
						s.set.serve(nc)
					}
				})
			}
			s.dispatch = func(nc net.Conn) {
				select {
				case queue <- nc:
				default:
					s.set.refuse(nc, handler.ErrServerFull)
				}
			}
			// The accept loops have ended when wait runs, so nothing sends
			// on the queue any more: the workers refuse what is left in it
			// and stop.
			var closeQueue sync.Once
			s.wait = func(ctx context.Context, deadline time.Time) bool {
				closeQueue.Do(func() { close(queue) })
				return s.set.awaitGoroutines(ctx, deadline, workers.Wait)
			}
			return s, nil
		},
	})
}
