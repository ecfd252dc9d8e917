package engine

import (
	"sync/atomic"

	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/admit"
)

// Stats is a snapshot of a server's counters.
type Stats struct {
	// Accepted counts connections accepted and handed to the handler.
	Accepted uint64
	// Open is the number of connections currently open.
	Open int64
	// Refused counts connections closed before Open because a cap was
	// reached (handler.ErrServerFull), or because the server began shutting
	// down while they waited in a queue (handler.ErrShutdown).
	Refused uint64
	// RefusedBy splits Refused by reason, keyed by the labels of
	// admit.Reasons: server-full, per-ip-limit, per-ip-rate, shutdown,
	// other.
	RefusedBy map[string]uint64
	// AcceptErrors counts failed accept calls (EMFILE and the like).
	AcceptErrors uint64
	// Overflows counts connections closed because their outbound buffer
	// passed Config.MaxPending.
	Overflows uint64
	// BytesIn and BytesOut count payload bytes read and written.
	BytesIn, BytesOut uint64
	// FrameTimeouts counts connections closed for handler.ErrFrameTimeout.
	FrameTimeouts uint64
	// WriteTimeouts counts connections closed for handler.ErrWriteTimeout:
	// the peer took no bytes for Config.WriteTimeout.
	WriteTimeouts uint64
	// HandshakeErrors counts TLS handshakes that failed or timed out.
	HandshakeErrors uint64
	// ChildApp, under fork and prefork, sums the app counters that the
	// child processes' handlers keep (handler.Counter): the parent's own
	// handler serves nothing. Zero for the other models, whose handler
	// counts for itself.
	ChildApp handler.Counts
}

// counters is the live form of Stats, shared by every model.
type counters struct {
	accepted, refused, acceptErrors, overflows, bytesIn, bytesOut atomic.Uint64
	open                                                          atomic.Int64
	frameTimeouts, writeTimeouts, handshakeErrors                 atomic.Uint64
	refusedBy                                                     admit.Refusals
}

// refusal counts one refused connection.
func (c *counters) refusal(reason error) {
	c.refused.Add(1)
	c.refusedBy.Add(reason)
}

func (c *counters) snapshot() Stats {
	return Stats{
		Accepted:     c.accepted.Load(),
		Open:         c.open.Load(),
		Refused:      c.refused.Load(),
		AcceptErrors: c.acceptErrors.Load(),
		Overflows:    c.overflows.Load(),
		BytesIn:      c.bytesIn.Load(),
		BytesOut:     c.bytesOut.Load(),

		RefusedBy:       c.refusedBy.Snapshot(),
		FrameTimeouts:   c.frameTimeouts.Load(),
		WriteTimeouts:   c.writeTimeouts.Load(),
		HandshakeErrors: c.handshakeErrors.Load(),
	}
}
