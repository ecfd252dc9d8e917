// Package chat is a chat server as a handler.Handler: rooms, nicks,
// private messages, in length-prefixed or line framing. docs/protocol.md
// in the repository is its protocol, version 1.
//
// The package is split by concern:
//
//   - protocol.go: the client's commands (ParseCommand), names, error codes;
//   - greeting.go: telling a server's framing from its first bytes, for
//     clients;
//   - chat.go: Options, New, the Handler, and encoding of server frames;
//   - session.go: one connection: framing, limits, commands;
//   - hub.go: rooms and nicks, and fan-out over copy-on-write member lists;
//   - limits.go: the token bucket and the idle timer;
//   - bus.go: the Bus seam between hubs, and LocalNet, the in-process bus.
//
// Like every app it sees only package handler (and frame), so it runs
// unchanged on every concurrency model.
package chat

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/handler"
)

// Defaults, as DefaultOptions returns them.
const (
	DefaultMaxFrame    = frame.DefaultMax // 1 MiB
	DefaultMaxConns    = 10000
	DefaultMsgRate     = 100 // messages a second
	DefaultMsgBurst    = 200
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultPresenceLimit is the room size above which JOIN and LEAVE
	// are not sent (Options.PresenceLimit).
	DefaultPresenceLimit = 1000
)

// MinServerFrame is the smallest MaxServerFrame allowed: every fixed reply
// fits in it.
const MinServerFrame = 512

// DefaultMaxServerFrame is the largest server frame when
// Options.MaxServerFrame is 0 (and MaxFrame is not smaller): 256 KiB, a
// quarter of the engine's default outbound bound (engine.Config.MaxPending,
// 1 MiB), as the CLI makes it by default. So one message never overflows a
// receiver that keeps up on a server with the engine's defaults. A server
// with a smaller MaxPending should set MaxServerFrame to a quarter of it.
const DefaultMaxServerFrame = 256 << 10

// minFrame is the smallest MaxFrame allowed: "/msg", a longest nick and
// some text fit in it.
const minFrame = 64

// Options configure a chat handler.
type Options struct {
	// Framing is the framing of both directions: frame.Length (the
	// default when empty) or frame.Line.
	Framing frame.Kind
	// MaxFrame is the largest frame a client may send, in payload bytes.
	// A longer one gets "ERR frame-too-large" and the connection is
	// closed. 0 means DefaultMaxFrame.
	MaxFrame int
	// MaxServerFrame is the largest frame the server sends. A message
	// whose MSG or PRIV frame would be longer is refused with "ERR
	// too-long"; /who and /rooms lists are cut to fit. Keep it well under
	// the engine's per-connection outbound bound (a quarter of it, as the
	// CLI does), so that one message can never overflow a receiver that
	// keeps up. 0 means MaxFrame or DefaultMaxServerFrame, whichever is
	// smaller, but at least MinServerFrame: 256 KiB with the default
	// MaxFrame, which suits the engine's default MaxPending of 1 MiB.
	MaxServerFrame int
	// MaxConns caps the connections the handler serves at once. Past it a
	// new connection gets "ERR server-full" and is closed. 0 means
	// DefaultMaxConns.
	MaxConns int
	// MsgRate and MsgBurst are each connection's token bucket: MsgRate
	// frames a second, bursts of up to MsgBurst. A frame over the limit
	// gets "ERR rate-limited" and is dropped. 0 in either turns the limit
	// off.
	MsgRate  float64
	MsgBurst int
	// IdleTimeout closes a connection that sends no frame for this long,
	// with "BYE idle-timeout". 0 turns it off.
	IdleTimeout time.Duration
	// PresenceLimit is the most members a room may have, on every node of
	// the bus, for its joins and leaves to be sent to its members as JOIN
	// and LEAVE: above it they are not (a room of n members costs n
	// frames per join), a member who joins is told so with "NOTICE
	// presence-off", and /who still lists everyone. 0 turns the limit off.
	PresenceLimit int
	// Bus attaches the hub to the bus that carries traffic between hubs.
	// nil means a LocalNet of the handler's own.
	Bus func(Node) (Bus, error) `json:"-"`
}

// DefaultOptions returns the options the CLI starts from: length framing,
// 1 MiB client frames, server frames of DefaultMaxServerFrame (256 KiB,
// as MaxServerFrame 0 means), 10000 connections, 100 messages a second
// with bursts of 200, a 5 minute idle timeout, and presence announced in
// rooms of up to 1000 members. They suit an engine.Config with the default
// MaxPending (1 MiB).
func DefaultOptions() Options {
	return Options{
		Framing:       frame.Length,
		MaxFrame:      DefaultMaxFrame,
		MaxConns:      DefaultMaxConns,
		MsgRate:       DefaultMsgRate,
		MsgBurst:      DefaultMsgBurst,
		IdleTimeout:   DefaultIdleTimeout,
		PresenceLimit: DefaultPresenceLimit,
	}
}

// withDefaults fills in the fields whose zero value means a default, and
// checks the rest.
func (o Options) withDefaults() (Options, error) {
	if o.Framing == "" {
		o.Framing = frame.Length
	}
	if _, err := frame.ParseKind(string(o.Framing)); err != nil {
		return o, fmt.Errorf("--framing: %w", err)
	}
	if o.MaxFrame == 0 {
		o.MaxFrame = DefaultMaxFrame
	}
	if o.MaxServerFrame == 0 {
		o.MaxServerFrame = max(min(o.MaxFrame, DefaultMaxServerFrame), MinServerFrame)
	}
	if o.MaxConns == 0 {
		o.MaxConns = DefaultMaxConns
	}
	switch {
	case o.MaxFrame < minFrame || o.MaxFrame > frame.MaxLimit:
		return o, fmt.Errorf("--max-frame %d: want %d to %d bytes", o.MaxFrame, minFrame, frame.MaxLimit)
	case o.MaxServerFrame < MinServerFrame:
		return o, fmt.Errorf("largest server frame %d: want at least %d bytes", o.MaxServerFrame, MinServerFrame)
	case o.MaxConns < 0:
		return o, fmt.Errorf("--max-conns %d: must not be negative", o.MaxConns)
	case o.MsgRate < 0 || math.IsNaN(o.MsgRate) || math.IsInf(o.MsgRate, 0):
		return o, fmt.Errorf("--msg-rate %v: want 0 (off) or a positive number", o.MsgRate)
	case o.MsgBurst < 0:
		return o, fmt.Errorf("--msg-burst %d: want 0 (off) or a positive number", o.MsgBurst)
	case o.IdleTimeout < 0:
		return o, fmt.Errorf("--idle-timeout %v: want 0 (off) or a positive duration", o.IdleTimeout)
	case o.PresenceLimit < 0:
		return o, fmt.Errorf("--presence-limit %d: want 0 (off) or a positive number of members", o.PresenceLimit)
	}
	return o, nil
}

// Handler is the chat server. One Handler is one hub (a node of the chat);
// it serves every connection of a server, from many goroutines at once.
type Handler struct {
	hub *hub
}

var (
	_ handler.Handler  = (*Handler)(nil)
	_ handler.Refuser  = (*Handler)(nil)
	_ handler.Quiescer = (*Handler)(nil)
	_ handler.Counter  = (*Handler)(nil)
)

// New returns a chat handler. Call Close when its server has shut down,
// to detach it from its bus.
func New(o Options) (*Handler, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	h, err := newHub(o)
	if err != nil {
		return nil, err
	}
	return &Handler{hub: h}, nil
}

// Open greets a new connection with HELLO and puts it in the lobby, or
// refuses it with "ERR server-full" past Options.MaxConns.
func (h *Handler) Open(c handler.Conn) handler.Session { return h.hub.open(c) }

// Refuse is what a model sends to a connection it refuses before Open:
// "ERR server-full" when one of its own caps is reached
// (handler.ErrServerFull), "ERR too-many-connections" when the client's
// address has the most connections allowed open (handler.ErrTooManyConns),
// and "ERR connecting-too-fast" when it opens them faster than allowed
// (handler.ErrConnRate), each followed by BYE with the same code; for any
// other reason, "BYE error".
func (h *Handler) Refuse(reason error) []byte {
	enc := h.hub.enc
	switch {
	case errors.Is(reason, handler.ErrServerFull):
		return enc.closing(CodeServerFull, "the server is at its connection limit")
	case errors.Is(reason, handler.ErrTooManyConns):
		return enc.closing(CodeTooManyConns, "your address has the most connections the server allows open")
	case errors.Is(reason, handler.ErrConnRate):
		return enc.closing(CodeConnRate, "your address opens connections faster than the server allows")
	}
	return enc.bye(ByeError)
}

// Counts returns the chat's protocol counters: frames received and queued
// to clients, and messages dropped by the rate limit.
func (h *Handler) Counts() handler.Counts {
	return handler.Counts{
		FramesIn:    h.hub.framesIn.Load(),
		FramesOut:   h.hub.framesOut.Load(),
		RateLimited: h.hub.rateLimited.Load(),
	}
}

// Quiesced is called by the engine at shutdown, after it stopped reading
// every connection and before the farewells: if the bus delivers from other
// processes (a Drainer), it waits, until deadline at the latest, for events
// in flight to reach the local connections.
func (h *Handler) Quiesced(deadline time.Time) {
	if d, ok := h.hub.bus.(Drainer); ok {
		d.Drain(deadline)
	}
}

// Close detaches the handler from its bus. Call it after the server has
// shut down.
func (h *Handler) Close() error { return h.hub.bus.Close() }

// encoder makes server frames. One is shared by every connection of a hub;
// it holds no state but the framing and the size limit.
type encoder struct {
	kind frame.Kind
	max  int // the largest payload, Options.MaxServerFrame
}

// frame appends payload to dst as one frame. It fails if payload is over
// the limit.
func (e encoder) frame(dst, payload []byte) ([]byte, error) {
	return frame.Append(dst, e.kind, e.max, payload)
}

// maxWords bounds a fixed reply's payload, so it always fits in
// MinServerFrame.
const maxWords = MinServerFrame / 2

// words frames the words joined by spaces, for fixed replies: it cuts the
// payload to maxWords bytes and, in line framing, turns newlines into
// spaces, so it always makes one valid frame.
func (e encoder) words(words ...string) []byte {
	var p []byte
	for i, w := range words {
		if i > 0 {
			p = append(p, ' ')
		}
		p = append(p, w...)
	}
	p = []byte(cut(p, maxWords))
	if e.kind == frame.Line {
		p = bytes.ReplaceAll(p, []byte{'\n'}, []byte{' '})
	}
	out, err := e.frame(nil, p)
	if err != nil {
		panic("chat: fixed reply does not fit: " + err.Error()) // MinServerFrame guarantees it does
	}
	return out
}

func (e encoder) hello(nick string) []byte {
	return e.words("HELLO", "tcplab", strconv.Itoa(Version), nick)
}

func (e encoder) err(code, detail string) []byte { return e.words("ERR", code, detail) }

func (e encoder) bye(reason string) []byte { return e.words("BYE", reason) }

// closing is an error that ends the connection: ERR, then BYE with the
// same code.
func (e encoder) closing(code, detail string) []byte {
	return append(e.err(code, detail), e.bye(code)...)
}
