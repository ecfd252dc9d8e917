package engine

import (
	"fmt"
	"net"
	"runtime"
	"sync/atomic"

	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/serving"
)

// thread serves each connection on a goroutine locked to its own OS thread
// for the connection's whole life: the classic thread-per-connection
// server. The goroutine never unlocks, so when the connection ends the
// runtime terminates the thread with it, and the process's thread count
// follows the number of open connections. A connection costs a kernel task
// and a thread stack on top of what the goroutine model spends, and every
// wake-up of a connection is a thread switch. Past --max-threads, new
// connections are refused (handler.ErrServerFull) instead of letting the
// runtime reach Go's thread limit, where it would abort the process.
func init() {
	Register(Model{
		Name:    "thread",
		Summary: "one OS thread per connection (a goroutine locked to its thread)",
		Limits:  fmt.Sprintf("--max-threads connections (default %d, at most Go's thread limit - %d); past it refused", DefaultMaxThreads, serving.ThreadHeadroom),
		Options: []string{"max-threads"},
		TLS:     true,
		New: func(h handler.Handler, cfg Config) (Server, error) {
			s, err := newBlockingServer(h, cfg, 1)
			if err != nil {
				return nil, err
			}
			var live atomic.Int64 // connection threads running
			s.dispatch = func(nc net.Conn) {
				if live.Add(1) > int64(cfg.MaxThreads) {
					live.Add(-1)
					s.set.refuse(nc, handler.ErrServerFull)
					return
				}
				if !s.set.begin() {
					live.Add(-1)
					nc.Close()
					return
				}
				go func() {
					// Never unlocked: the thread exits with the goroutine.
					runtime.LockOSThread()
					defer live.Add(-1)
					s.set.serve(nc)
				}()
			}
			return s, nil
		},
	})
}
