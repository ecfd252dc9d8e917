package engine

import (
	"errors"
	"fmt"

	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/reactor"
	"github.com/tcplab/tcplab/internal/uring"
)

// uring runs --loops event loops like reactor, each driven by an io_uring
// instance on its own locked OS thread instead of epoll: multishot
// accept, multishot receive into a registered ring of provided buffers,
// sends from mmap'd slots, and closes, all submitted in one io_uring_enter
// per pass of the loop. The machinery is internal/reactor's (its io_uring
// driver); docs/architecture.md describes it. Where the kernel refuses
// io_uring, New fails with an error wrapping ErrUnsupported that names
// the cause.
func init() {
	Register(Model{
		Name:    "uring",
		Summary: "io_uring event loops (--loops) on locked threads; handlers run on the loops",
		Limits:  "no cap beyond memory and file descriptors; out of descriptors, new connections are refused; needs io_uring (Linux 6.1+)",
		Options: []string{"listeners", "loops", "balance", "offload-workers"},
		TLS:     true,
		New: func(h handler.Handler, cfg Config) (Server, error) {
			srv, err := newLoops(h, cfg, reactor.Uring)
			if errors.Is(err, uring.ErrUnavailable) {
				return nil, fmt.Errorf("%w: %w", ErrUnsupported, err)
			}
			return srv, err
		},
	})
}
