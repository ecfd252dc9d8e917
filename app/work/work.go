// Package work is a request/response protocol whose cost the client
// chooses, as a handler.Handler: the load behind tcplab's workload lab.
// docs/work-protocol.md in the repository is its protocol.
//
// Each request is one length-prefixed frame (package frame, as the chat
// uses), and gets one reply frame, in order:
//
//   - "sha N TEXT" applies SHA-256 N times and answers "OK <hex of hN>"
//     (CPU work the client can check; see Sum);
//   - "sleep US" blocks the handler for US microseconds, where the model
//     runs it, and answers "OK slept US" (a synchronous call such as a
//     database query);
//   - "echo TEXT" answers "OK TEXT".
//
// The handler does the work in Session.Data, on whatever thread or
// goroutine the concurrency model runs it: that is the point. With
// Options.Offload it runs sleeps through handler.Offload instead, off an
// event loop. It sees only
// package handler (and frame), so it runs unchanged on every model.
//
// The files: protocol.go parses requests and formats replies; sha.go is
// the hash chain; work.go the handler and sessions.
package work

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/tcplab/tcplab/app/chat"
	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/handler"
)

// Defaults, as DefaultOptions returns them.
const (
	DefaultMaxSha   = 1_000_000
	DefaultMaxSleep = time.Second
	DefaultMaxFrame = frame.DefaultMax // 1 MiB, as the chat
	// DefaultMaxReply is the largest reply when Options.MaxReply is 0:
	// 256 KiB, a quarter of the engine's default outbound bound
	// (engine.Config.MaxPending, 1 MiB), as the chat's server frames.
	DefaultMaxReply = chat.DefaultMaxServerFrame
)

// MinReply is the smallest MaxReply allowed: every fixed reply, error or
// sha digest fits in it.
const MinReply = 512

// Options configure a work handler. The zero value of a field means its
// default.
type Options struct {
	// MaxSha is the largest N of "sha N TEXT"; past it "ERR too-much".
	// Default DefaultMaxSha.
	MaxSha int
	// MaxSleep is the longest "sleep US"; past it "ERR too-much". Default
	// DefaultMaxSleep. It is used in whole microseconds.
	MaxSleep time.Duration
	// MaxFrame is the largest request frame, in payload bytes; a longer
	// one gets "ERR frame-too-large" and the connection is closed, from
	// its header. Default DefaultMaxFrame.
	MaxFrame int
	// MaxReply is the largest reply payload: an "echo TEXT" whose reply
	// would be longer gets "ERR too-much". Keep it well under the engine's
	// per-connection outbound bound (a quarter, as the CLI does). Default
	// the smaller of MaxFrame and DefaultMaxReply, but at least MinReply.
	MaxReply int
	// Offload runs "sleep US" requests through handler.Offload: on an
	// event-loop model the sleep leaves the loop (replies keep their
	// order), where without it the sleep blocks the loop; the blocking
	// models run it in place either way.
	Offload bool
}

// DefaultOptions returns the options the CLI starts from.
func DefaultOptions() Options {
	return Options{MaxSha: DefaultMaxSha, MaxSleep: DefaultMaxSleep, MaxFrame: DefaultMaxFrame, MaxReply: DefaultMaxReply}
}

// withDefaults fills in the fields whose zero value means a default, and
// checks the rest.
func (o Options) withDefaults() (Options, error) {
	if o.MaxSha == 0 {
		o.MaxSha = DefaultMaxSha
	}
	if o.MaxSleep == 0 {
		o.MaxSleep = DefaultMaxSleep
	}
	if o.MaxFrame == 0 {
		o.MaxFrame = DefaultMaxFrame
	}
	if o.MaxReply == 0 {
		o.MaxReply = max(min(o.MaxFrame, DefaultMaxReply), MinReply)
	}
	switch {
	case o.MaxSha < 1:
		return o, fmt.Errorf("--max-sha %d: must be at least 1", o.MaxSha)
	case o.MaxSleep < time.Microsecond:
		return o, fmt.Errorf("--max-sleep %v: must be at least 1µs", o.MaxSleep)
	case o.MaxFrame < MinReply || o.MaxFrame > frame.MaxLimit:
		return o, fmt.Errorf("--max-frame %d: want %d to %d bytes", o.MaxFrame, MinReply, frame.MaxLimit)
	case o.MaxReply < MinReply:
		return o, fmt.Errorf("largest reply %d: want at least %d bytes", o.MaxReply, MinReply)
	}
	return o, nil
}

// Handler serves the work protocol. It is safe for concurrent use.
type Handler struct {
	opts      Options
	framesIn  atomic.Uint64
	framesOut atomic.Uint64
}

var (
	_ handler.Handler = (*Handler)(nil)
	_ handler.Refuser = (*Handler)(nil)
	_ handler.Counter = (*Handler)(nil)
)

// New returns a work handler, or an error naming the option that cannot
// work.
func New(o Options) (*Handler, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Handler{opts: o}, nil
}

// Options returns the handler's options, defaults filled in.
func (h *Handler) Options() Options { return h.opts }

// Open starts a session. The server says nothing until the first request.
func (h *Handler) Open(c handler.Conn) handler.Session {
	dec, err := frame.NewDecoder(frame.Length, h.opts.MaxFrame)
	if err != nil {
		panic("work: " + err.Error()) // Length is a known framing
	}
	return &session{h: h, c: c, dec: dec}
}

// Refuse is what a model sends to a connection it refuses before Open,
// as the chat does: "ERR <code> <detail>" then "BYE <code>" with the
// chat's codes (server-full, too-many-connections, connecting-too-fast),
// or "BYE error" for any other reason.
func (h *Handler) Refuse(reason error) []byte {
	switch {
	case errors.Is(reason, handler.ErrServerFull):
		return closing(chat.CodeServerFull, "the server is at its connection limit")
	case errors.Is(reason, handler.ErrTooManyConns):
		return closing(chat.CodeTooManyConns, "your address has the most connections the server allows open")
	case errors.Is(reason, handler.ErrConnRate):
		return closing(chat.CodeConnRate, "your address opens connections faster than the server allows")
	}
	return words("BYE", chat.ByeError)
}

// Counts returns the frames received and the replies queued.
func (h *Handler) Counts() handler.Counts {
	return handler.Counts{FramesIn: h.framesIn.Load(), FramesOut: h.framesOut.Load()}
}

// limits returns the request limits.
func (h *Handler) limits() Limits { return Limits{MaxSha: h.opts.MaxSha, MaxSleep: h.opts.MaxSleep} }

// words frames the words joined by spaces: a fixed reply. Every caller's
// words fit in MinReply.
func words(w ...string) []byte {
	out, err := frame.Append(nil, frame.Length, 0, bytes.Join(toBytes(w), []byte{' '}))
	if err != nil {
		panic("work: fixed reply: " + err.Error()) // never empty, never over 1 MiB
	}
	return out
}

func toBytes(w []string) [][]byte {
	b := make([][]byte, len(w))
	for i, s := range w {
		b[i] = []byte(s)
	}
	return b
}

// closing is an error that ends the connection: ERR, then BYE with the
// same code, as in the chat.
func closing(code, detail string) []byte {
	return append(words("ERR", code, detail), words("BYE", code)...)
}

// errBadFrame is the reason the session closes a connection after a
// framing error.
var errBadFrame = errors.New("work: bad frame")

// session is one connection. The engine never runs its Data and Closed at
// once.
type session struct {
	h    *Handler
	c    handler.Conn
	dec  *frame.Decoder
	out  []byte // reply being built, reused
	done bool   // closing after a framing error: ignore further input
}

var _ handler.Farewell = (*session)(nil)

// Data answers every whole request in in, in order, each reply written as
// soon as it is ready.
func (s *session) Data(in []byte) (int, error) {
	if s.done {
		return len(in), nil
	}
	used := 0
	for {
		p, n, err := s.dec.Decode(in[used:])
		if err != nil {
			s.badFrame(err)
			return len(in), nil
		}
		if n == 0 {
			return used, nil
		}
		used += n
		s.h.framesIn.Add(1)
		if s.h.opts.Offload && isSleep(p) {
			if r, perr := ParseRequest(p, s.h.limits()); perr == nil && r.Verb == VerbSleep {
				handler.Offload(s.c, func() { s.sleep(r) })
				return used, nil // the requests behind it wait for its reply
			}
		}
		s.answer(p)
	}
}

// isSleep reports whether request p is a sleep, so that Data can offload
// it: a quick look, ParseRequest decides.
func isSleep(p []byte) bool { return bytes.HasPrefix(p, []byte("sleep ")) }

// sleep answers an offloaded sleep request, off the goroutine that runs
// Data.
func (s *session) sleep(r Request) {
	time.Sleep(r.Sleep)
	reply, err := frame.Append(nil, frame.Length, 0, AppendReply(nil, r))
	if err == nil && s.c.Write(reply) == nil {
		s.h.framesOut.Add(1)
	}
}

// answer does one request's work and writes its reply.
func (s *session) answer(p []byte) {
	s.out = append(s.out[:0], 0, 0, 0, 0) // the length header, filled in below
	s.out = s.reply(s.out, p)
	binary.BigEndian.PutUint32(s.out, uint32(len(s.out)-frame.HeaderLen))
	if s.c.Write(s.out) == nil {
		s.h.framesOut.Add(1)
	}
	if cap(s.out) > 64<<10 {
		s.out = nil // do not keep a large echo's buffer per connection
	}
}

// reply appends the reply payload to request p.
func (s *session) reply(dst, p []byte) []byte {
	if !utf8.Valid(p) {
		return appendErr(dst, CodeBadUTF8, "frame is not valid UTF-8")
	}
	r, perr := ParseRequest(p, s.h.limits())
	if perr != nil {
		return appendErr(dst, perr.Code, perr.Detail)
	}
	switch r.Verb {
	case VerbSleep:
		time.Sleep(r.Sleep) // blocks where the model runs the handler: the point
	case VerbEcho:
		if n := len("OK ") + len(r.Text); n > s.h.opts.MaxReply {
			return appendErr(dst, CodeTooMuch, fmt.Sprintf("echo of %d bytes: the reply would be %d bytes, the most is %d", len(r.Text), n, s.h.opts.MaxReply))
		}
	}
	return AppendReply(dst, r)
}

func appendErr(dst []byte, code, detail string) []byte {
	dst = append(dst, "ERR "...)
	dst = append(dst, code...)
	dst = append(dst, ' ')
	return append(dst, detail...)
}

// badFrame ends the connection after a framing error: a frame over
// MaxFrame (from its header) or an empty one.
func (s *session) badFrame(err error) {
	s.done = true
	code := CodeBadFrame
	if errors.Is(err, frame.ErrTooLarge) {
		code = CodeFrameTooLarge
	}
	s.c.CloseWith(closing(code, err.Error()), fmt.Errorf("%w: %w", errBadFrame, err))
}

// Farewell names the reason when the engine closes the connection on its
// own, with the chat's words: "BYE shutting-down", "BYE frame-timeout",
// "ERR slow-consumer ..." and so on. It reads nothing Data changes.
func (s *session) Farewell(reason error) []byte {
	switch {
	case errors.Is(reason, handler.ErrOverflow):
		return closing(chat.CodeSlowConsumer, "outbound buffer over its limit")
	case errors.Is(reason, handler.ErrShutdown):
		return words("BYE", chat.ByeShuttingDown)
	case errors.Is(reason, handler.ErrInputTooLarge):
		return closing(CodeFrameTooLarge, "unconsumed input over the server's limit")
	case errors.Is(reason, handler.ErrServerFull):
		return closing(chat.CodeServerFull, "the server is at its connection limit")
	case errors.Is(reason, handler.ErrFrameTimeout):
		return words("BYE", chat.ByeFrameTimeout)
	}
	return words("BYE", chat.ByeError)
}

// Closed ends the session; it holds nothing to release.
func (s *session) Closed(error) {}
