package reactor

// driver is a loop's interface to the kernel: how it waits for events,
// reads, writes, accepts and closes. There are two: epoll
// (driver_epoll.go), which learns that a socket is ready and then reads or
// writes it itself, and io_uring (driver_uring.go), which submits the
// reads, writes, accepts and closes and learns when they completed.
//
// The loop core (loop.go, conn_io.go, timers.go) knows neither. It calls
// the methods below, always on the loop's goroutine (locked to its
// thread) except wake and release; the driver answers by calling the
// loop back, on the same goroutine, with what happened to a connection:
//
//   - loop.accepted: a listener gave a connection, or an error;
//   - loop.input: bytes arrived for a connection (the driver counts them
//     in loop.in); loop.inputEnded: its input ended (the peer's FIN, or an
//     error); loop.hungUp: it failed with nothing to read or write;
//   - loop.flush: the socket can take output again (readiness);
//     loop.sendDone: a send the driver held completed; loop.stalled: the
//     output is held up (the socket is full, or a send did not complete
//     at once);
//   - loop.finish: a connection being closed was found with input to
//     drop.
//
// Reading is the core's to allow: a driver reads or hands over input only
// while loop.canRead says so, and the core calls read when that turns
// true again (and on every pass while connection.rdReady stays set).
type driver interface {
	// start runs on the loop's thread before its first pass: io_uring
	// enables its ring there, and arms its accepts and wake-up read.
	start() error
	// wait submits what is queued and waits up to timeout ms for events
	// (-1: no limit; 0: do not wait). It only collects them.
	wait(timeout int)
	// handle hands the events wait collected to the loop.
	handle()
	// wake ends a wait in progress. Any goroutine may call it.
	wake()

	// accepting starts (on) or stops accepting on listener lfd, the
	// loop's: at New, around an accept backoff, and before quiesce
	// closes it.
	accepting(lfd int, on bool) error
	// attach starts serving c, accepted or placed on this loop.
	attach(c *conn) error
	// read reads (epoll) or hands over (io_uring: bytes held while
	// reading was paused, then the re-armed receive) what c has, calling
	// loop.input. The core calls it when canRead(c) has become true.
	read(c *conn)
	// send hands p, or a prefix of it, to the kernel for c. It returns
	// how many bytes the socket took at once, or sendPending if the
	// driver keeps the send and calls loop.sendDone when it completes;
	// err is a send that failed, which closes c.
	send(c *conn, p []byte) (n int, err error)
	// close closes c's socket, removed from the loop. peerSending says
	// the peer may still send: the driver ends the connection with a FIN
	// rather than a reset that would cost the peer the last bytes sent.
	close(c *conn, peerSending bool)

	// stop is called, once the loop is stopping and has no connection
	// left, at the end of each pass until it reports true: the driver may
	// still be closing sockets (epoll's lingering closes) or waiting for
	// operations in flight (io_uring). Then the loop ends.
	stop() bool
	// release frees the driver's kernel resources, after stop or if the
	// loop never ran.
	release()
}

// sendPending is what driver.send returns when the driver keeps the send:
// loop.sendDone reports how it went.
const sendPending = -1
