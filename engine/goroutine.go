package engine

import (
	"net"

	"github.com/tcplab/tcplab/handler"
)

// goroutine serves each connection on its own goroutine, Go's idiom. The
// runtime multiplexes the goroutines over a few threads with one epoll, so
// a connection costs a goroutine stack (a few KiB) and nothing is capped
// but memory and file descriptors.
func init() {
	Register(Model{
		Name:    "goroutine",
		Summary: "one goroutine per connection (Go's runtime poller underneath)",
		Limits:  "no cap beyond memory and file descriptors",
		Options: []string{"listeners"},
		TLS:     true,
		New: func(h handler.Handler, cfg Config) (Server, error) {
			s, err := newBlockingServer(h, cfg, cfg.Listeners)
			if err != nil {
				return nil, err
			}
			s.dispatch = s.goroutinePerConn
			return s, nil
		},
	})
}

// goroutinePerConn serves nc on a new goroutine: the goroutine model's
// dispatch, and a prefork worker's.
func (s *blockingServer) goroutinePerConn(nc net.Conn) {
	if !s.set.begin() {
		nc.Close()
		return
	}
	go s.set.serve(nc)
}
