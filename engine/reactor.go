package engine

import (
	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/reactor"
)

// reactor runs --loops epoll event loops, each on its own locked OS
// thread, with no goroutine per connection: a loop reads a connection,
// runs the session's Data on the loop itself and writes the reply inline.
// With TLS the loop drives crypto/tls too, and only the handshake runs off
// it. The machinery lives in internal/reactor; docs/architecture.md
// describes it.
func init() {
	Register(Model{
		Name:    "reactor",
		Summary: "epoll event loops (--loops) on locked threads; handlers run on the loops",
		Limits:  "no cap beyond memory and file descriptors; out of descriptors, new connections are refused",
		Options: []string{"listeners", "loops", "balance", "offload-workers"},
		TLS:     true,
		New: func(h handler.Handler, cfg Config) (Server, error) {
			return newLoops(h, cfg, reactor.Reactor)
		},
	})
}

// newLoops starts the event loops of reactor, reactor-pool or uring. The
// loops read cfg directly, and their Server is an engine Server as it is.
func newLoops(h handler.Handler, cfg Config, m reactor.Model) (Server, error) {
	srv, err := reactor.New(h, cfg, m)
	if err != nil {
		return nil, err
	}
	return srv, nil
}
