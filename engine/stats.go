package engine

import "github.com/tcplab/tcplab/internal/serving"

// Stats is a snapshot of a server's counters.
//
// It is defined in internal/serving, which the engine shares with
// the event loops of internal/reactor:
//
//	type Stats struct {
//		// Accepted counts connections accepted and handed to the handler.
//		Accepted uint64
//		// Open is the number of connections currently open.
//		Open int64
//		// Refused counts connections closed before Open: a cap was reached or
//		// the process ran out of file descriptors (handler.ErrServerFull), the
//		// client's address is over a limit (handler.ErrTooManyConns,
//		// handler.ErrConnRate), or the server began shutting down while they
//		// waited in a queue (handler.ErrShutdown).
//		Refused uint64
//		// RefusedBy splits Refused by reason, keyed by the labels of
//		// admit.Reasons: server-full, per-ip-limit, per-ip-rate, shutdown,
//		// other.
//		RefusedBy map[string]uint64
//		// AcceptErrors counts failed accept calls (EMFILE and the like).
//		AcceptErrors uint64
//		// Overflows counts connections closed because their outbound buffer
//		// passed Config.MaxPending.
//		Overflows uint64
//		// BytesIn and BytesOut count payload bytes read and written.
//		BytesIn, BytesOut uint64
//		// FrameTimeouts counts connections closed for handler.ErrFrameTimeout.
//		FrameTimeouts uint64
//		// WriteTimeouts counts connections closed for handler.ErrWriteTimeout:
//		// the peer took no bytes for Config.WriteTimeout.
//		WriteTimeouts uint64
//		// HandshakeErrors counts TLS handshakes that failed or timed out.
//		HandshakeErrors uint64
//		// Offloads counts the functions sessions offloaded
//		// (handler.Offload) that have run, and OffloadPanics those of them
//		// that panicked: each closed its connection with an error wrapping
//		// handler.ErrOffloadPanic.
//		Offloads, OffloadPanics uint64
//		// Stalls counts the pauses of a connection's reading that its session
//		// asked for (handler.Flow.PauseReading): in the chat, a sender
//		// slowed because a receiver fell behind. StallTime is their total
//		// length, as granted.
//		Stalls    uint64
//		StallTime time.Duration
//		// ChildApp, under fork and prefork, sums the app counters that the
//		// child processes' handlers keep (handler.Counter): the parent's own
//		// handler serves nothing. Zero for the other models, whose handler
//		// counts for itself.
//		ChildApp handler.Counts
//	}
type Stats = serving.Stats
