package engine

import (
	"net"

	"github.com/tcplab/tcplab/handler"
)

// seq accepts one connection, serves it to its end, and only then accepts
// the next: the seed's single-threaded server. Everyone else waits in the
// kernel's accept queue (the listen backlog), and once that is full their
// handshakes are dropped.
func init() {
	Register(Model{
		Name:       "seq",
		Summary:    "one connection at a time; the rest wait in the listen backlog",
		Limits:     "1 connection; others queue in the backlog (--backlog)",
		Sequential: true,
		TLS:        true,
		New: func(h handler.Handler, cfg Config) (Server, error) {
			s, err := newBlockingServer(h, cfg, 1)
			if err != nil {
				return nil, err
			}
			s.dispatch = func(nc net.Conn) {
				if !s.set.begin() {
					nc.Close()
					return
				}
				s.set.serve(nc) // on the accept loop itself: nothing else is accepted meanwhile
			}
			return s, nil
		},
	})
}
