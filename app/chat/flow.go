package chat

import (
	"sync/atomic"
	"time"

	"github.com/tcplab/tcplab/handler"
)

// Flow control of the fan-out: a room message is written to every member's
// outbound buffer, and a member whose buffer passes its bound is closed as
// a slow consumer. When the senders of a room outpace what its members
// read, that would cut the members one after the other. So when a message
// leaves a receiver's buffer over half its bound, the sender is slowed
// instead: its session stops handling frames after that one and asks the
// engine to pause reading its connection (handler.Flow.PauseReading), for
// flowStallMin at half the bound, rising in proportion to flowStallMax at
// the bound. The frames it has not handled wait in the engine, and TCP
// holds the sender's next ones back. After the pause the engine hands the
// session those frames again; the next message that finds a receiver over
// the mark pauses it again, so while a receiver stays over the mark its
// room's senders each get at most one message to it per pause, fewer the
// further behind it is: the room settles at the pace its slowest reader
// keeps.
//
// A receiver that has stopped reading must not hold its room back for
// long: one over half its bound whose socket has taken no bytes for
// flowGrace (its buffer has not gone down between two writes to it) no
// longer slows anyone. The senders go on at full speed, it passes its
// bound, and it is closed as a slow consumer. A receiver that keeps
// reading, however slowly, keeps slowing its room's senders: each pause
// still lets a message through, so one that reads slower than that passes
// its bound in the end and is closed too.
//
// Flow control needs the receivers' Conns to implement handler.Flow
// (every model's does) and applies to senders on the receivers' own hub:
// a message from another node over the bus is written as before, never
// waited for (its sender's hub slows it for the receivers there).
const (
	flowStallMin = 2 * time.Millisecond
	flowStallMax = 20 * time.Millisecond
	flowGrace    = 5 * time.Second
)

// flowState is a session's part in flow control: as a receiver, since
// when it has been over the mark; as a sender, the pause a fan-out asked
// for it. Fan-outs to it run on many goroutines at once.
type flowState struct {
	conn handler.Flow // nil if the Conn does not implement it: no flow control
	// over is when (ns since the hub's epoch, at least 1) the receiver,
	// over the mark, was last seen reading; 0 if it was under the mark
	// at the last write.
	over atomic.Int64
	// level is the receiver's queued bytes after the last write that
	// found it over the mark.
	level atomic.Int64
	// stall is the pause a fan-out of this session's message asked for,
	// 0 if none: Data takes it after the frame.
	stall atomic.Int64
}

// stallFor returns how long the sender of a message, just written to r
// as wrote bytes, should pause: 0 for not at all.
func (h *hub) stallFor(r *session, wrote int) time.Duration {
	if r.flow.conn == nil {
		return 0
	}
	n, limit := r.flow.conn.Queued()
	if n <= limit/2 {
		if r.flow.over.Load() != 0 {
			r.flow.over.Store(0)
		}
		return 0
	}
	now := max(1, int64(time.Since(h.epoch)))
	last := r.flow.level.Swap(int64(n))
	since := r.flow.over.Load()
	if since == 0 || int64(n-wrote) < last {
		// Just over the mark, or its socket took bytes since the last
		// write: it is reading. (Writes from other senders in between
		// can hide that it read; they never fake it.)
		r.flow.over.Store(now)
		since = now
	}
	if time.Duration(now-since) > flowGrace {
		return 0 // not reading: it no longer holds the room back
	}
	over := float64(n-limit/2) / float64(limit-limit/2)
	return flowStallMin + time.Duration(over*float64(flowStallMax-flowStallMin))
}

// askStall records that s, the sender of a message, should pause for d.
func (s *session) askStall(d time.Duration) {
	for {
		old := s.flow.stall.Load()
		if int64(d) <= old || s.flow.stall.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

// takeStall asks the engine for the pause a fan-out of s's messages asked
// for, if any, and reports whether it did: Data then stops handling
// frames until the engine passes them again after the pause.
func (s *session) takeStall() bool {
	if s.flow.stall.Load() == 0 || s.flow.conn == nil {
		return false
	}
	s.flow.conn.PauseReading(time.Duration(s.flow.stall.Swap(0)))
	return true
}
