package handler

import "errors"

// Offload runs fn off the goroutine that runs the session's events, so
// that a step that blocks (a call over the network, a disk, a lock held
// long) does not hold up other connections, and keeps the connection's
// order while it runs. Call it from the session's Open, Data or Closed,
// on the goroutine the engine runs it on, with c the session's own Conn;
// fn must not call Offload itself.
//
// On the event-loop models (reactor, reactor-pool, uring), where many
// connections share one goroutine, fn runs on a bounded pool of workers
// (engine.Config.OffloadWorkers; past it functions wait their turn in
// order, at most one per connection). On the blocking models (seq,
// goroutine, thread, pool, fork, prefork), whose session already has a
// goroutine or thread of its own, fn runs there, in place. Either way the
// session sees the same order:
//
//   - fn runs once, after the Open, Data or Closed call that asked for it
//     has returned. Several calls during one event run one after another,
//     in the order made.
//   - Until fn has returned the session gets no Data. Input that arrives
//     meanwhile waits: the engine reads ahead up to Config.MaxInbound
//     bytes and then stops reading (the peer meets TCP flow control; the
//     connection is not closed for it). The first Data call after fn
//     returns gets what the session left unconsumed, then what waited.
//   - Closed comes after fn has returned, exactly once, even when the
//     connection ends while fn runs. fn's Writes then fail with
//     ErrClosed. Offload during Closed runs fn after Closed.
//   - Output keeps the same order: everything the event wrote (before or
//     after the call to Offload) goes out before what fn writes, and what
//     fn writes before what later events write. fn may write to any
//     connection, as any goroutine may.
//
// So a session that offloads the handling of one request consumes input
// only up to the end of that request and returns; the requests behind it
// come back in the next Data call, after fn's reply.
//
// fn always runs, even if the connection starts closing first. A panic in
// fn is recovered: it closes that connection only, with an error wrapping
// ErrOffloadPanic (and the session's Farewell), is logged, and is counted
// in engine.Stats.OffloadPanics. Shutdown waits for functions that are
// running or waiting, up to its drain deadline, before it says farewell
// to the connections; past the deadline it returns, reporting the drain
// cut short, and a function still running finishes on its own, its
// connection's Closed following it.
//
// With a Conn that does not implement Offloader (a test's fake, say),
// Offload runs fn at once and returns after it. A session that calls
// Offload as the last thing its event does sees the same order either
// way.
func Offload(c Conn, fn func()) {
	if o, ok := c.(Offloader); ok {
		o.Offload(fn)
		return
	}
	fn()
}

// Offloader is implemented by the Conn of every model in package engine:
// Offload is its method. Sessions call the package function Offload,
// which also works with a Conn that lacks it.
type Offloader interface {
	// Offload arranges for fn to run after the current event, as the
	// package function Offload describes.
	Offload(fn func())
}

// ErrOffloadPanic is wrapped by the reason a connection is closed when a
// function it offloaded (Offload) panicked. The error's message includes
// the panic's value.
var ErrOffloadPanic = errors.New("offloaded function panicked")
