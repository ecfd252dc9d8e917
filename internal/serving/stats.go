package serving

import (
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/admit"
)

// Stats is a snapshot of a server's counters.
type Stats struct {
	// Accepted counts connections accepted and handed to the handler.
	Accepted uint64
	// Open is the number of connections currently open.
	Open int64
	// Refused counts connections closed before Open: a cap was reached or
	// the process ran out of file descriptors (handler.ErrServerFull), the
	// client's address is over a limit (handler.ErrTooManyConns,
	// handler.ErrConnRate), or the server began shutting down while they
	// waited in a queue (handler.ErrShutdown).
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
	// Offloads counts the functions sessions offloaded
	// (handler.Offload) that have run, and OffloadPanics those of them
	// that panicked: each closed its connection with an error wrapping
	// handler.ErrOffloadPanic.
	Offloads, OffloadPanics uint64
	// Stalls counts the pauses of a connection's reading that its session
	// asked for (handler.Flow.PauseReading): in the chat, a sender
	// slowed because a receiver fell behind. StallTime is their total
	// length, as granted.
	Stalls    uint64
	StallTime time.Duration
	// ChildApp, under fork and prefork, sums the app counters that the
	// child processes' handlers keep (handler.Counter): the parent's own
	// handler serves nothing. Zero for the other models, whose handler
	// counts for itself.
	ChildApp handler.Counts
}

// Counters is the live form of Stats, one set for every model: each
// counter is safe for concurrent use. The event loops keep their byte
// counts per loop instead, and add them to the snapshot.
type Counters struct {
	// Each counts what the Stats field of its name does.
	Accepted, Refused, AcceptErrors, Overflows, BytesIn, BytesOut atomic.Uint64
	Open                                                          atomic.Int64
	FrameTimeouts, WriteTimeouts, HandshakeErrors                 atomic.Uint64
	Offloads, OffloadPanics                                       atomic.Uint64
	RefusedBy                                                     admit.Refusals
	// Stalls and StallNanos count the pauses of reading (Stall).
	Stalls, StallNanos atomic.Uint64
}

// Stall counts one pause of a connection's reading, d long.
func (c *Counters) Stall(d time.Duration) {
	c.Stalls.Add(1)
	c.StallNanos.Add(uint64(d))
}

// Refusal counts one refused connection.
func (c *Counters) Refusal(reason error) {
	c.Refused.Add(1)
	c.RefusedBy.Add(reason)
}

// Snapshot returns the counters so far.
func (c *Counters) Snapshot() Stats {
	return Stats{
		Accepted:     c.Accepted.Load(),
		Open:         c.Open.Load(),
		Refused:      c.Refused.Load(),
		AcceptErrors: c.AcceptErrors.Load(),
		Overflows:    c.Overflows.Load(),
		BytesIn:      c.BytesIn.Load(),
		BytesOut:     c.BytesOut.Load(),

		RefusedBy:       c.RefusedBy.Snapshot(),
		FrameTimeouts:   c.FrameTimeouts.Load(),
		WriteTimeouts:   c.WriteTimeouts.Load(),
		HandshakeErrors: c.HandshakeErrors.Load(),
		Offloads:        c.Offloads.Load(),
		OffloadPanics:   c.OffloadPanics.Load(),
		Stalls:          c.Stalls.Load(),
		StallTime:       time.Duration(c.StallNanos.Load()),
	}
}

// AddOffloaded returns what a connection runs after its current event
// when a session offloads fn there and pending (nil if nothing) was
// offloaded before it in the same event: fn, or pending and then fn, which
// runs even if pending panicked.
func AddOffloaded(pending, fn func()) func() {
	if pending == nil {
		return fn
	}
	return func() {
		defer fn()
		pending()
	}
}

// RunOffloaded runs fn, a function a session offloaded (handler.Offload),
// and counts it. A panic in fn is recovered, counted, and logged with its
// stack on log (remote names the connection); it returns an error
// wrapping handler.ErrOffloadPanic that the caller closes the connection
// with, and nil if fn returned.
func (c *Counters) RunOffloaded(fn func(), log *slog.Logger, remote net.Addr) (err error) {
	defer func() {
		c.Offloads.Add(1)
		if v := recover(); v != nil {
			c.OffloadPanics.Add(1)
			err = fmt.Errorf("%w: %v", handler.ErrOffloadPanic, v)
			log.Error("offloaded function panicked; closing its connection", "remote", remote, "panic", v, "stack", string(debug.Stack()))
		}
	}()
	fn()
	return nil
}
