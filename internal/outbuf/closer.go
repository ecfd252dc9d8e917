package outbuf

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcplab/tcplab/handler"
)

// Closer is the close state every model keeps beside a connection's
// Buffer: who closed it, why, by when it must be flushed, and whether the
// session's farewell is queued yet. It makes the close sequence the seam
// promises the same on every model:
//
//  1. the first caller wins, from any goroutine;
//  2. the session's farewell (for closes the engine starts) is queued after
//     everything already written, and later Writes fail;
//  3. only then is the connection sealed, so an owner that waits for
//     "sealed and idle" cannot close the socket ahead of the farewell.
//
// The zero value is ready.
type Closer struct {
	started, sealed atomic.Bool

	mu       sync.Mutex
	reason   error
	deadline time.Time
}

// Close starts closing out for reason, to be flushed by deadline. If
// farewell is not nil, its bytes are queued last. An overflow drops the
// bytes not yet taken by a flusher (see Buffer.Close). It reports false,
// doing nothing, if closing had already started.
func (c *Closer) Close(out *Buffer, reason error, farewell handler.Farewell, deadline time.Time) bool {
	c.mu.Lock()
	if c.started.Load() {
		c.mu.Unlock()
		return false
	}
	c.reason, c.deadline = reason, deadline
	c.started.Store(true)
	c.mu.Unlock()
	var final []byte
	if farewell != nil {
		final = farewell.Farewell(reason)
	}
	out.Close(errors.Is(reason, handler.ErrOverflow), final)
	c.sealed.Store(true)
	return true
}

// Final is a fixed farewell: the last bytes a session gave Conn.CloseWith.
type Final []byte

// Farewell returns f, whatever the reason.
func (f Final) Farewell(error) []byte { return f }

// FarewellOf returns sess's Farewell if the engine started the close and
// the session has one, else nil.
func FarewellOf(sess handler.Session, byEngine bool) handler.Farewell {
	if f, ok := sess.(handler.Farewell); ok && byEngine {
		return f
	}
	return nil
}

// Closing reports whether closing has started.
func (c *Closer) Closing() bool { return c.started.Load() }

// Sealed reports whether the farewell (if any) is queued: nothing more
// will be written.
func (c *Closer) Sealed() bool { return c.sealed.Load() }

// Reason returns the reason closing started with (nil before it did, or
// for an orderly close by the peer).
func (c *Closer) Reason() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// Deadline returns the flush deadline closing started with, and whether it
// has started.
func (c *Closer) Deadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadline, c.started.Load()
}
