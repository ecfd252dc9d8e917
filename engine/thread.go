package engine

import (
	"fmt"
	"math"
	"net"
	"runtime"
	"runtime/debug"
	"sync/atomic"

	"github.com/tcplab/tcplab/handler"
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
		Limits:  fmt.Sprintf("--max-threads connections (default %d, at most Go's thread limit - %d); past it refused", DefaultMaxThreads, threadHeadroom),
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

// threadHeadroom is how many threads --max-threads leaves, below Go's limit
// (debug.SetMaxThreads, default 10000), for the runtime's own threads,
// threads blocked in system calls, and the connections' writer goroutines.
const threadHeadroom = 1000

// goMaxThreads returns the runtime's current thread limit (default
// 10,000; a process that passes it aborts). The runtime offers no getter,
// so it sets the limit and restores it at once; the interim value is the
// highest there is, because setting a limit below the threads already
// running aborts too.
func goMaxThreads() int {
	n := debug.SetMaxThreads(math.MaxInt32)
	debug.SetMaxThreads(n)
	return n
}

// checkMaxThreads reports an error if n connection threads could take the
// process to Go's thread limit.
func checkMaxThreads(n int) error {
	if limit := goMaxThreads(); n > limit-threadHeadroom {
		return fmt.Errorf("--max-threads %d: must be at most %d, %d below Go's thread limit %d (runtime/debug.SetMaxThreads)",
			n, limit-threadHeadroom, threadHeadroom, limit)
	}
	return nil
}
