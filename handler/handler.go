// Package handler is the seam between a protocol and a concurrency model.
//
// A protocol (echo, chat, or your own) implements [Handler]. An engine (see
// package engine) owns the sockets: it accepts, reads, writes and shuts
// down, and it reports each connection to the handler as three events:
//
//   - Open: a connection was accepted. The handler returns a [Session],
//     the per-connection state that receives the next two events.
//   - Data: bytes arrived. The session consumes what it can and returns how
//     many bytes it used; the engine keeps the rest and passes them again,
//     followed by newer bytes, on the next call.
//   - Closed: the connection ended. Called exactly once, after the last Data.
//
// For one connection the engine never runs two events at once, and it
// delivers them in order. Different connections may run concurrently,
// though on an event-loop model many share one goroutine: a session whose
// event must wait (on the network, a disk) moves that step off it with
// [Offload], which keeps the connection's order.
//
// A session writes through [Conn]. Conn.Write may be called from any
// goroutine (a chat room fans a message out to many connections from the
// sender's goroutine), keeps the order of writes, and never blocks on the
// network: it appends to a bounded per-connection outbound buffer that the
// engine drains. Going over the bound closes that connection with
// [ErrOverflow].
package handler

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// Handler serves one protocol. One Handler value serves every connection of
// a server, possibly from many goroutines at once, so it must be safe for
// concurrent use.
type Handler interface {
	// Open is called once per accepted connection, before any Data. The
	// returned Session receives that connection's events. Open may write
	// to c (a greeting, for example).
	Open(c Conn) Session
}

// Session is the per-connection state a Handler returns from Open.
type Session interface {
	// Data is called when bytes arrive. in holds the bytes that earlier
	// calls left unconsumed, followed by the new ones. Data returns how
	// many bytes from the front of in it consumed; the engine keeps the
	// rest for the next call. in is valid only during the call: a session
	// that needs bytes later must copy them.
	//
	// A non-nil error ends the connection: the engine flushes what the
	// session already wrote, closes the socket, and passes the error to
	// Closed. So does a consumed count outside 0..len(in), with an error
	// wrapping ErrBadConsumed (see CheckConsumed).
	Data(in []byte) (consumed int, err error)

	// Closed is called exactly once when the connection has ended, with
	// nil for an orderly close by the peer, or the reason otherwise. No
	// Data follows it. Writes to the Conn after this fail with ErrClosed.
	Closed(reason error)
}

// Farewell is an optional interface for a Session. When the engine closes a
// connection on its own initiative (shutdown, outbound overflow, the
// inbound limit, the frame timeout, the write timeout), it calls Farewell
// first and sends the returned bytes as the last
// thing on the wire, on a best-effort basis. The chat app uses it to send
// "BYE <reason>".
//
// Farewell may run on any goroutine, concurrently with the session's Data
// (an overflow is detected by whichever goroutine wrote too much), so it
// must not read state that Data changes.
type Farewell interface {
	Farewell(reason error) []byte
}

// Refuser is an optional interface for a Handler. When a model refuses a
// connection before Open (ErrServerFull: a cap was reached; ErrTooManyConns
// or ErrConnRate: the per-address limits; ErrShutdown: the server is
// stopping), it sends the bytes Refuse returns for that reason, on a
// best-effort basis, and closes the connection. Returning nil means the
// connection is just closed.
type Refuser interface {
	Refuse(reason error) []byte
}

// Quiescer is an optional interface for a Handler whose sessions also get
// messages from outside the server, such as a chat bus between processes.
// Server.Shutdown calls Quiesced once, after it has stopped reading every
// connection and before it closes any (see Farewell): the handler may wait
// there, until deadline at the latest, for messages still in flight to be
// written to its connections, so that they go out ahead of the farewells.
// Without it, a shutdown closes the connections as soon as reading stops.
type Quiescer interface {
	Quiesced(deadline time.Time)
}

// Conn is a session's handle on its connection.
type Conn interface {
	// Write queues a copy of p to be sent after everything written before
	// it. It is safe to call from any goroutine and never waits for the
	// network. Bytes passed in one call are never interleaved with another
	// call's bytes, so one Write per frame keeps frames whole.
	//
	// If queueing p would take the connection's outbound buffer over its
	// bound, Write returns ErrOverflow and the engine closes the
	// connection. After the connection is closing, Write returns ErrClosed.
	Write(p []byte) error

	// Close asks the engine to end the connection: reading stops, bytes
	// already written are flushed (bounded by the engine's drain timeout),
	// and then the socket is closed. reason reaches Session.Closed. Close
	// is safe to call from any goroutine, and more than once.
	Close(reason error)

	// CloseWith is Close with a last word: it queues last after everything
	// written so far and starts closing in one step, so no Write from any
	// goroutine can come after last (a protocol's goodbye, say). last is
	// queued even if it takes the outbound buffer over its bound. If the
	// connection is already closing, CloseWith does nothing.
	CloseWith(last []byte, reason error)

	// LocalAddr returns the server's side of the connection.
	LocalAddr() net.Addr

	// RemoteAddr returns the peer's address.
	RemoteAddr() net.Addr
}

// Flow is an optional interface of a Conn, for flow control between
// connections: a handler that relays one connection's input to others (a
// chat room's fan-out) can see how far behind a receiver is, and slow
// the sender down rather than let the receiver's buffer overflow. Every
// model's Conn implements it.
type Flow interface {
	// Queued returns the bytes written to the connection that its peer
	// has not taken yet (the outbound buffer, the write under way
	// included), and the bound past which Write fails with ErrOverflow.
	// It takes no lock and is safe to call from any goroutine: a
	// fan-out may call it after each write.
	Queued() (n, limit int)

	// PauseReading asks the engine to read nothing more from the
	// connection for d, counted from when the Data call in progress
	// returns, and then to pass the input that call left unconsumed to
	// Data again before it reads more. A session calls it from its own
	// Data, and returns early, leaving the frames it has not handled
	// unconsumed: they wait in the engine, and the peer, whose next bytes
	// are not read, is held back by TCP's flow control.
	//
	// d is cut to MaxPause; several calls during one Data call pause for
	// the longest. A call outside Data takes effect after the next Data
	// call. The pause never blocks: on an event loop the loop serves its
	// other connections meanwhile, and a blocking model's read loop
	// waits. A connection that closes during a pause ends at once. The
	// engine counts each pause and its length (Stats.Stalls,
	// Stats.StallTime).
	PauseReading(d time.Duration)
}

// MaxPause is the longest pause Flow.PauseReading grants at once.
const MaxPause = time.Second

var (
	// ErrClosed is returned by Conn.Write once the connection is closing or
	// closed.
	ErrClosed = errors.New("connection closed")

	// ErrOverflow is the reason a connection is closed when its outbound
	// buffer would exceed its bound: the peer is not reading fast enough.
	ErrOverflow = errors.New("outbound buffer over its limit (slow consumer)")

	// ErrInputTooLarge is the reason a connection is closed when the bytes
	// a session left unconsumed exceed the engine's inbound limit.
	ErrInputTooLarge = errors.New("unconsumed input over its limit")

	// ErrShutdown is the reason given to sessions closed because the
	// server is shutting down.
	ErrShutdown = errors.New("server shutting down")

	// ErrServerFull is the reason given when a model refuses a new
	// connection because a cap (threads, workers queue, processes) is
	// reached.
	ErrServerFull = errors.New("server full")

	// ErrTooManyConns is the reason a new connection is refused when its
	// address already has the engine's per-address maximum of connections
	// open (Config.MaxConnsPerIP).
	ErrTooManyConns = errors.New("too many connections from this address")

	// ErrConnRate is the reason a new connection is refused when its
	// address opens connections faster than the engine's per-address rate
	// (Config.ConnRate).
	ErrConnRate = errors.New("new connections from this address too fast")

	// ErrFrameTimeout is the reason a connection is closed when input the
	// session left unconsumed (a frame begun but not finished) has waited
	// longer than the engine's frame timeout since its first byte: a
	// client trickling bytes to hold the connection (slowloris).
	ErrFrameTimeout = errors.New("frame not completed in time")

	// ErrWriteTimeout is the reason a connection is closed when its socket
	// took no bytes for the engine's write timeout while data waited: the
	// peer stopped reading.
	ErrWriteTimeout = errors.New("write timed out: the peer is not reading")

	// ErrBadConsumed is the reason a connection is closed when its
	// session's Data reports consuming fewer than zero bytes, or more than
	// it was given: a bug in the session, which ends that connection
	// only.
	ErrBadConsumed = errors.New("session reported consuming bytes it was not given")
)

// CheckConsumed returns nil if consumed is a possible result of a Data call
// given n bytes (0 <= consumed <= n), and otherwise an error wrapping
// ErrBadConsumed. Every model checks each Data result with it before
// using it, and closes the connection with the error.
func CheckConsumed(consumed, n int) error {
	if consumed < 0 || consumed > n {
		return fmt.Errorf("%w: %d of %d", ErrBadConsumed, consumed, n)
	}
	return nil
}

// Counter is an optional interface for a Handler that counts protocol-level
// events the engine cannot see: frames and messages dropped by a rate
// limit. A metrics exporter reads it when it is scraped, so Counts must be
// cheap and safe to call from any goroutine at any time.
type Counter interface {
	Counts() Counts
}

// Counts are a handler's protocol-level counters since it was made.
type Counts struct {
	// FramesIn counts whole frames (messages) received from clients.
	FramesIn uint64
	// FramesOut counts frames queued to clients.
	FramesOut uint64
	// RateLimited counts messages dropped by a per-connection rate limit.
	RateLimited uint64
}

// Func adapts a function that creates sessions into a Handler.
type Func func(c Conn) Session

// Open calls f(c).
func (f Func) Open(c Conn) Session { return f(c) }
