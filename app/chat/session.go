package chat

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/handler"
)

// Reasons the chat closes a connection itself; they reach Session.Closed.
var (
	errQuit       = errors.New("chat: client quit")
	errIdle       = errors.New("chat: idle timeout")
	errBadFrame   = errors.New("chat: bad frame")
	errServerFull = fmt.Errorf("chat: over the connection limit: %w", handler.ErrServerFull)
)

// session is one connection.
type session struct {
	hub     *hub
	conn    handler.Conn
	id      uint64
	refused bool // over MaxConns: closed from Open, never counted

	nick atomic.Pointer[string] // read by other goroutines (/who)
	flow flowState              // fan-out flow control (flow.go)

	// The rest belongs to Data, Closed and the functions they offload,
	// which the engine never runs at once.
	dec    *frame.Decoder
	room   *room
	bucket bucket
	idle   *idleTimer
	done   bool // closing on our own: ignore further input
}

var (
	_ handler.Session  = (*session)(nil)
	_ handler.Farewell = (*session)(nil)
)

// begin starts the session, or closes the connection if it cannot.
func (s *session) begin() {
	if err := s.start(); err != nil {
		s.done = true
		s.closeWith(s.hub.enc.closing(CodeUnavailable, err.Error()), err)
	}
}

// offload runs fn, which waits for the bus, through handler.Offload if
// the bus's calls wait on the network, and otherwise at once. It reports
// whether it offloaded fn: Data then stops at the frame being handled, and
// the frames after it come back once fn has answered.
func (s *session) offload(fn func()) bool {
	if !s.hub.waits {
		fn()
		return false
	}
	handler.Offload(s.conn, fn)
	return true
}

// start greets the connection and puts it in the lobby.
func (s *session) start() error {
	h := s.hub
	dec, err := frame.NewDecoder(h.opts.Framing, h.opts.MaxFrame)
	if err != nil {
		return err
	}
	s.dec = dec
	s.bucket = newBucket(h.opts.MsgRate, h.opts.MsgBurst)
	nick, err := h.claimGuest(s)
	if err != nil {
		return err
	}
	s.nick.Store(&nick)
	// HELLO goes once the node has the lobby's traffic (a bus
	// subscription, flushed) and s is a member, and before any of the
	// lobby's traffic reaches s: the client hears of everyone who joins
	// after its greeting, nothing comes before the greeting, and /who
	// lists it once it has been greeted.
	r, p, err := h.join(s, Lobby, func() { s.send(h.enc.hello(nick)) })
	if err != nil {
		return err
	}
	s.room = r
	s.publishPresence(EventJoin, r, p)
	s.idle = startIdle(h.opts.IdleTimeout, h.epoch, s.idleExpired)
	return nil
}

func (s *session) nickname() string { return *s.nick.Load() }

// send writes one frame and counts it.
func (s *session) send(p []byte) {
	if s.write(p) {
		s.hub.framesOut.Add(1)
	}
}

// write writes one frame without counting it (a fan-out counts its writes
// once). It reports whether the frame was queued; an error means the
// connection is closing, and the frame is dropped.
func (s *session) write(p []byte) bool { return s.conn.Write(p) == nil }

// closeWith closes the connection with final as its last frames (BYE,
// maybe after an ERR): nothing a fan-out writes can follow them.
func (s *session) closeWith(final []byte, reason error) { s.conn.CloseWith(final, reason) }

func (s *session) sendErr(code, detail string) { s.send(s.hub.enc.err(code, detail)) }

func (s *session) publish(kind EventKind, room string, text []byte) error {
	return s.hub.bus.Publish(Event{Kind: kind, Room: room, Nick: s.nickname(), Text: text, Origin: s.hub.origin(s)})
}

// publishPresence publishes s's join to r, or its leave, with this node's
// count of r's members after it (for the other nodes' presence limit) and,
// for this node, whether its JOIN or LEAVE frame goes out (p).
func (s *session) publishPresence(kind EventKind, r *room, p presence) {
	s.hub.bus.Publish(Event{Kind: kind, Room: r.name, Nick: s.nickname(), Members: p.members, Origin: s.hub.origin(s), quiet: !p.sent})
}

// Data decodes every whole frame in in and handles it.
func (s *session) Data(in []byte) (int, error) {
	if s.done || s.dec == nil {
		return len(in), nil
	}
	now := time.Now()
	used, frames := 0, uint64(0)
	for !s.done {
		p, n, err := s.dec.Decode(in[used:])
		if err != nil {
			s.badFrame(err)
			break
		}
		if n == 0 {
			break
		}
		used += n
		frames++
		s.idle.touch(now)
		if s.handle(p, now) {
			break // offloaded: the rest waits for its answer
		}
		if s.takeStall() {
			break // the rest after the pause: see flow.go
		}
	}
	if frames > 0 {
		s.hub.framesIn.Add(frames)
	}
	if s.done {
		return len(in), nil
	}
	return used, nil
}

// badFrame ends the connection after a framing error: a frame over
// MaxFrame (its header or its length says so, before it is buffered) or an
// empty length frame.
func (s *session) badFrame(err error) {
	s.done = true
	s.closeWith(s.hub.enc.end(BadFrame(err)), fmt.Errorf("%w: %w", errBadFrame, err))
}

// handle answers one frame. A command that waits for the bus is answered
// through offload; handle reports whether it was offloaded.
func (s *session) handle(p []byte, now time.Time) (offloaded bool) {
	if len(p) == 0 {
		return false // an empty line: nothing to say
	}
	cmd, perr := ParseCommand(p)
	if perr == nil && cmd.Op == OpQuit {
		s.done = true
		s.closeWith(s.hub.enc.bye(ByeQuit), errQuit)
		return false
	}
	if !s.bucket.allow(now) {
		s.hub.rateLimited.Add(1)
		s.sendErr(CodeRateLimited, "message dropped")
		return false
	}
	if !utf8.Valid(p) {
		s.sendErr(CodeBadUTF8, "frame is not valid UTF-8")
		return false
	}
	if perr != nil {
		var pe *Error
		errors.As(perr, &pe)
		s.sendErr(pe.Code, pe.Detail)
		return false
	}
	// p is valid during Data only: what an offloaded command reads of it
	// is copied.
	switch cmd.Op {
	case OpSay:
		s.say(cmd.Text)
	case OpNick:
		name := string(cmd.Name)
		return s.offload(func() { s.rename(name) })
	case OpJoin:
		name := string(cmd.Name)
		return s.offload(func() { s.switchRoom(name) })
	case OpRooms:
		return s.offload(s.rooms)
	case OpWho:
		return s.offload(s.who)
	case OpMsg:
		to, text := string(cmd.Name), bytes.Clone(cmd.Text)
		return s.offload(func() { s.private(to, text) })
	case OpPing:
		s.send(s.hub.enc.words("PONG"))
	case OpHelp:
		s.send(s.hub.enc.words(append([]string{"OK", "help"}, Commands()...)...))
	}
	return false
}

func (s *session) tooLong(n, limit int) {
	s.sendErr(CodeTooLong, "the message would make a "+strconv.Itoa(n)+"-byte frame; the limit is "+strconv.Itoa(limit))
}

func (s *session) say(text []byte) {
	if n, limit := eventLen(EventMsg, s.room.name, s.nickname(), text), s.hub.messageLimit(); n > limit {
		s.tooLong(n, limit)
		return
	}
	if err := s.publish(EventMsg, s.room.name, text); err != nil {
		s.sendErr(CodeUnavailable, err.Error())
	}
}

func (s *session) rename(nick string) {
	old := s.nickname()
	if nick != old {
		if err := s.hub.claim(s, nick); err != nil {
			if errors.Is(err, ErrNickTaken) {
				s.sendErr(CodeNickTaken, nick)
			} else {
				s.sendErr(CodeUnavailable, err.Error())
			}
			return
		}
		s.nick.Store(&nick)
		s.hub.release(s, old)
	}
	s.send(s.hub.enc.words("OK", "nick", nick))
}

// switchRoom leaves the current room and joins name. OK join is written
// once the connection is a member and before any of the new room's
// traffic reaches it (hub.join), and after leave has returned, so it
// follows the last of the old room's (hub.leave waits out the fan-outs in
// progress there).
func (s *session) switchRoom(name string) {
	ok := s.hub.enc.words("OK", "join", name)
	if name == s.room.name {
		s.send(ok)
		return
	}
	old := s.room
	s.leaveRoom()
	r, p, err := s.hub.join(s, name, func() { s.send(ok) })
	if err != nil {
		s.sendErr(CodeUnavailable, err.Error())
		if r, p, err = s.hub.join(s, old.name, nil); err != nil {
			s.done = true
			s.closeWith(s.hub.enc.closing(CodeUnavailable, err.Error()), err)
			return
		}
	}
	s.room = r
	s.publishPresence(EventJoin, r, p)
}

// leaveRoom leaves the current room and tells its other members.
func (s *session) leaveRoom() {
	if s.room == nil {
		return
	}
	p := s.hub.leave(s, s.room)
	s.publishPresence(EventLeave, s.room, p)
	s.room = nil
}

func (s *session) rooms() {
	rooms, err := s.hub.bus.Rooms()
	if err != nil {
		s.sendErr(CodeUnavailable, err.Error())
		return
	}
	names := slices.Sorted(maps.Keys(rooms))
	items := make([]string, len(names))
	for i, r := range names {
		items[i] = r + ":" + strconv.Itoa(rooms[r])
	}
	s.send(s.hub.list(nil, "rooms", items))
}

func (s *session) who() {
	nicks, err := s.hub.bus.Who(s.room.name)
	if err != nil {
		s.sendErr(CodeUnavailable, err.Error())
		return
	}
	slices.Sort(nicks)
	s.send(s.hub.list(nil, "who", nicks))
}

func (s *session) private(to string, text []byte) {
	from := s.nickname()
	if n, limit := eventLen(EventPriv, "", from, text), s.hub.messageLimit(); n > limit {
		s.tooLong(n, limit)
		return
	}
	err := s.hub.bus.Private(Event{Kind: EventPriv, Nick: from, To: to, Text: text, Origin: s.hub.origin(s)})
	switch {
	case errors.Is(err, ErrNoSuchNick):
		s.sendErr(CodeNoSuchNick, to)
	case err != nil:
		s.sendErr(CodeUnavailable, err.Error())
	default:
		s.send(s.hub.enc.words("OK", "msg"))
	}
}

// idleExpired runs on the idle timer's goroutine.
func (s *session) idleExpired() { s.closeWith(s.hub.enc.bye(ByeIdleTimeout), errIdle) }

// Farewell names the reason when the engine closes the connection on its
// own. It reads nothing that Data changes, so it is safe to call at any
// time from any goroutine.
func (s *session) Farewell(reason error) []byte { return s.hub.enc.end(Farewell(reason)) }

// Closed leaves the room, frees the nick and then the connection slot
// (through offload: the release waits for the bus).
func (s *session) Closed(error) {
	s.idle.stop()
	if s.refused {
		return
	}
	s.leaveRoom()
	s.offload(func() {
		if p := s.nick.Load(); p != nil {
			s.hub.release(s, *p)
		}
		s.hub.conns.Add(-1)
	})
}
