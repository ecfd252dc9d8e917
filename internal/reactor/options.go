package reactor

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tcplab/tcplab/internal/admit"
)

// Balance policies: how connections accepted on a shared listener are
// spread over the loops.
const (
	RoundRobin = "round-robin"
	LeastConns = "least-conns"
)

// Options configures a Server. Every field must be set (the engine fills in
// its defaults); Validate says which one is not.
type Options struct {
	// Addr is the host:port to bind.
	Addr string
	// Backlog is the listen(2) accept-queue length of each listener.
	Backlog int
	// Listeners is the number of SO_REUSEPORT listeners. With one, the
	// loop that owns it spreads connections over every loop by Balance;
	// with more, listener i belongs to loop i mod Loops and its
	// connections stay on that loop (the kernel spreads them).
	Listeners int
	// Loops is the number of event loops, each an epoll instance on its
	// own locked OS thread.
	Loops int
	// Balance is RoundRobin or LeastConns.
	Balance string
	// Workers, when positive, runs handler calls on a pool of that many
	// goroutines (reactor-pool) instead of on the loops (reactor).
	Workers int
	// IOUring drives each loop with an io_uring instance instead of epoll
	// (the uring model): the kernel accepts, receives into provided
	// buffers, sends and closes through submissions. New fails with an
	// error wrapping uring.ErrUnavailable when the kernel refuses io_uring.
	IOUring bool
	// Ring sizes the io_uring loops; the zero value means the defaults.
	Ring RingOptions

	// MaxPending bounds each connection's outbound buffer.
	MaxPending int
	// MaxInbound bounds the bytes a session may leave unconsumed.
	MaxInbound int
	// HighWater and LowWater are the outbound levels at which reading a
	// connection pauses and resumes. HighWater also bounds the new bytes
	// passed to one Data call, so a reply as large as its request fits.
	HighWater, LowWater int
	// WriteTimeout closes a connection whose socket takes no bytes for
	// this long while data waits.
	WriteTimeout time.Duration
	// DrainTimeout bounds the flush of a connection closed by Conn.Close,
	// by its peer or for an input limit.
	DrainTimeout time.Duration
	// Logger receives the server's logs.
	Logger *slog.Logger

	// Limiter applies the per-address limits to each connection as it is
	// accepted; a refused one gets the handler's refusal. Nil admits
	// everyone.
	Limiter *admit.Limiter
	// FrameTimeout closes a connection with handler.ErrFrameTimeout when
	// input its session left unconsumed has waited this long since it
	// began. 0 or less turns it off.
	FrameTimeout time.Duration
	// ObserveQueue, if set, is called with the size of each batch of
	// outbound bytes a loop takes to write.
	ObserveQueue func(bytes int)
}

// Validate reports the first option that cannot work.
func (o Options) Validate() error {
	for _, p := range []struct {
		name string
		v    int
	}{
		{"backlog", o.Backlog}, {"listeners", o.Listeners}, {"loops", o.Loops},
		{"max-pending", o.MaxPending}, {"max-inbound", o.MaxInbound},
		{"high-water", o.HighWater}, {"low-water", o.LowWater},
	} {
		if p.v < 1 {
			return fmt.Errorf("reactor: %s %d: must be at least 1", p.name, p.v)
		}
	}
	if o.Workers < 0 {
		return fmt.Errorf("reactor: workers %d: must not be negative", o.Workers)
	}
	if o.IOUring && o.Workers > 0 {
		return errors.New("reactor: io_uring loops run handlers on the loops; workers are not supported")
	}
	if err := o.Ring.validate(); err != nil {
		return err
	}
	if o.LowWater > o.HighWater || o.HighWater > o.MaxPending {
		return fmt.Errorf("reactor: want low-water %d <= high-water %d <= max-pending %d",
			o.LowWater, o.HighWater, o.MaxPending)
	}
	if o.WriteTimeout <= 0 || o.DrainTimeout < 0 {
		return errors.New("reactor: write timeout must be positive and drain timeout not negative")
	}
	if o.Balance != RoundRobin && o.Balance != LeastConns {
		return fmt.Errorf("reactor: balance %q: want %s or %s", o.Balance, RoundRobin, LeastConns)
	}
	if o.Logger == nil {
		return errors.New("reactor: no logger")
	}
	return nil
}

// Stats is a snapshot of a server's counters. Its fields match
// engine.Stats, which converts it directly.
type Stats struct {
	// Accepted counts connections accepted and handed to the handler.
	Accepted uint64
	// Open is the number of connections currently open.
	Open int64
	// Refused counts connections closed before Open: the process ran out
	// of file descriptors (handler.ErrServerFull), or the client's address
	// is over a limit (handler.ErrTooManyConns, handler.ErrConnRate).
	Refused uint64
	// AcceptErrors counts failed accept calls.
	AcceptErrors uint64
	// Overflows counts connections closed for handler.ErrOverflow.
	Overflows uint64
	// BytesIn and BytesOut count payload bytes read and written.
	BytesIn, BytesOut uint64
	// RefusedBy splits Refused by reason (admit.Reasons).
	RefusedBy map[string]uint64
	// FrameTimeouts counts connections closed for handler.ErrFrameTimeout.
	FrameTimeouts uint64
	// WriteTimeouts counts connections closed for handler.ErrWriteTimeout.
	WriteTimeouts uint64
}
