// Package outbuf is the bounded per-connection outbound buffer every model
// shares. Any goroutine may Write; one flusher at a time (the holder of the
// flush token) takes batches and writes them to the socket.
//
// Writers append to a pending slice. The flusher swaps the pending slice out
// as one batch, writes it, and hands it back for reuse, so steady traffic
// allocates nothing and a batch of many small writes costs one syscall.
//
// The buffer does not own a goroutine. It tells its owner that data is
// waiting through a notify callback, called at most once until the next
// Take, and not at all while the owner has said it will flush anyway (Hold).
package outbuf

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcplab/tcplab/handler"
)

// OverflowLinger is how long a connection closed for overflow gets to
// deliver its farewell before its socket is closed anyway. A peer that let
// MaxPending bytes pile up will not catch up in a useful time, so it is
// short: the point is to isolate it quickly.
const OverflowLinger = 250 * time.Millisecond

// CloseLinger is how long a connection the server closes while the peer
// is still sending keeps reading (and dropping) the peer's bytes after its
// FIN, so the close does not turn into a reset that loses the farewell.
const CloseLinger = 250 * time.Millisecond

// keepCap is the largest batch buffer kept for reuse after a flush. Larger
// ones are dropped so an idle connection does not pin a burst's memory.
const keepCap = 4 << 10

// Buffer is a bounded outbound byte queue. The zero value is not usable;
// call New.
type Buffer struct {
	mu       sync.Mutex
	pending  []byte // written, not yet taken
	inflight int    // bytes of the taken batch not yet reported sent
	spare    []byte // an empty batch buffer kept for reuse
	max      int
	closed   bool        // Write refuses; Final still allowed
	held     atomic.Bool // the owner will flush after its callback: don't notify
	notified bool        // notify was called and no Take has happened since
	flushing bool        // the flush token is taken
	whole    bool        // Close never drops pending bytes (KeepWhole)
	notify   func()
	// level is len(pending)+inflight, stored under mu whenever either
	// changes, so Len takes no lock.
	level atomic.Int64
}

// New returns a Buffer that holds at most max bytes (pending plus in
// flight). notify is called, without the lock held, when data is written
// that nobody has been told about yet.
func New(max int, notify func()) *Buffer {
	return &Buffer{max: max, notify: notify}
}

// KeepWhole makes Close keep the bytes not yet taken even when asked to
// drop them: for a stream that cannot lose a piece in the middle, such as
// TLS records, each sealed in sequence. Call it before the buffer is
// shared.
func (b *Buffer) KeepWhole() { b.whole = true }

// Write appends a copy of p. It returns handler.ErrClosed after Close, and
// handler.ErrOverflow, without queueing anything, if p would take the
// buffer over its bound.
func (b *Buffer) Write(p []byte) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return handler.ErrClosed
	}
	if len(b.pending)+b.inflight+len(p) > b.max {
		b.mu.Unlock()
		return handler.ErrOverflow
	}
	if b.pending == nil && b.spare != nil {
		b.pending, b.spare = b.spare, nil
	}
	b.pending = append(b.pending, p...)
	b.setLevel()
	call := b.wantNotify()
	b.mu.Unlock()
	if call {
		b.notify()
	}
	return nil
}

// setLevel publishes the queued bytes for Len. Called with mu held.
func (b *Buffer) setLevel() { b.level.Store(int64(len(b.pending) + b.inflight)) }

// wantNotify reports whether the owner must be told about pending data, and
// records that it has been. Called with mu held.
func (b *Buffer) wantNotify() bool {
	if b.held.Load() || b.notified || b.flushing || len(b.pending) == 0 {
		return false
	}
	b.notified = true
	return true
}

// Hold tells the buffer that its owner is running a callback and will
// flush afterwards, so writes meanwhile need no notification. It takes no
// lock: a writer racing with it at worst notifies once more.
func (b *Buffer) Hold() {
	b.held.Store(true)
}

// Unhold ends a Hold. It reports whether data is pending.
func (b *Buffer) Unhold() bool {
	b.mu.Lock()
	b.held.Store(false)
	has := len(b.pending) > 0
	b.mu.Unlock()
	return has
}

// UnholdTake ends a Hold and, if data is pending and no other flusher holds
// the token, takes the token and returns the batch, as Take would. It is
// Unhold followed by Take under one lock, for an owner that flushes right
// after its callback (an event loop's reply path).
func (b *Buffer) UnholdTake() []byte {
	b.mu.Lock()
	b.held.Store(false)
	if b.flushing || len(b.pending) == 0 {
		b.mu.Unlock()
		return nil
	}
	b.flushing = true
	batch := b.swap()
	b.mu.Unlock()
	return batch
}

// Take acquires the flush token and returns the pending bytes as a batch.
// It returns nil if nothing is pending or another flusher holds the token.
// The caller writes the batch (reporting progress with Sent if it writes in
// pieces) and then calls Next.
func (b *Buffer) Take() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.flushing || len(b.pending) == 0 {
		return nil
	}
	b.flushing = true
	return b.swap()
}

// swap moves pending into a new batch. Called with mu held and the token
// taken, so no batch is in flight: the level does not change.
func (b *Buffer) swap() []byte {
	batch := b.pending
	b.pending, b.spare = b.spare, nil
	b.inflight = len(batch)
	b.notified = false
	return batch
}

// Sent records that n more bytes of the current batch reached the socket.
func (b *Buffer) Sent(n int) {
	b.mu.Lock()
	b.inflight -= n
	b.setLevel()
	b.mu.Unlock()
}

// Next is called by the token holder once batch is fully written. It
// returns the next batch, keeping the token, or nil, giving the token back.
// When it gives the token back on a closed buffer it calls notify, so an
// owner waiting to finish learns that the flusher is done.
func (b *Buffer) Next(batch []byte) []byte {
	b.mu.Lock()
	b.inflight = 0
	b.setLevel()
	if cap(batch) <= keepCap && b.spare == nil {
		b.spare = batch[:0]
	}
	if len(b.pending) > 0 {
		next := b.swap()
		b.mu.Unlock()
		return next
	}
	b.flushing = false
	call := b.closed
	b.mu.Unlock()
	if call {
		b.notify()
	}
	return nil
}

// Abort gives the flush token back after a failed write, dropping the
// batch and everything pending. Use it when the socket is dead.
func (b *Buffer) Abort() {
	b.mu.Lock()
	b.flushing = false
	b.inflight = 0
	b.pending = nil
	b.closed = true
	b.setLevel()
	b.mu.Unlock()
	b.notify()
}

// Trim lets go of the batch buffer kept for reuse: for an owner whose
// large writes are over (a TLS handshake's flight), so an idle connection
// does not keep their memory.
func (b *Buffer) Trim() {
	b.mu.Lock()
	b.spare = nil
	b.mu.Unlock()
}

// Len returns the bytes queued: pending plus the unsent part of the batch
// in flight. Models compare it with their high- and low-water marks. It
// takes no lock: a fan-out may ask after every write (handler.Flow).
func (b *Buffer) Len() int { return int(b.level.Load()) }

// Max returns the bound given to New.
func (b *Buffer) Max() int { return b.max }

// Idle reports whether nothing is pending and no flusher holds the token.
func (b *Buffer) Idle() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending) == 0 && !b.flushing
}

// Close makes later Writes fail with handler.ErrClosed. If dropPending is
// set, bytes not yet taken by a flusher are discarded: a batch already in
// flight is finished, so the stream still ends on a whole write (unless
// KeepWhole said no byte may be dropped). final, if
// not empty, is queued after everything else, ignoring the bound. Close
// reports whether it was the first call.
func (b *Buffer) Close(dropPending bool, final []byte) bool {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false
	}
	b.closed = true
	if dropPending && !b.whole {
		b.pending = nil
	}
	b.pending = append(b.pending, final...)
	b.setLevel()
	call := b.wantNotify()
	b.mu.Unlock()
	if call {
		b.notify()
	}
	return true
}
