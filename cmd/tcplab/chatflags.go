package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"
	"github.com/tcplab/tcplab/app/chat"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/handler"
)

// chatServeExample is the serve command's example of the chat app.
const chatServeExample = "  tcplab serve --app chat --framing line   # then: nc 127.0.0.1 7000, or tcplab chat --nick alice --framing line"

// chatFlags are the serve command's flags for --app chat.
type chatFlags struct {
	framing  string
	maxFrame int
	maxConns int
	msgRate  float64
	msgBurst int
	idle     time.Duration
}

// chatFlagNames lists the flags addChatFlags defines; they apply to the
// chat app only.
func chatFlagNames() []string {
	return []string{"framing", "max-frame", "max-conns", "msg-rate", "msg-burst", "idle-timeout"}
}

func addChatFlags(f *pflag.FlagSet, c *chatFlags) {
	d := chat.DefaultOptions()
	f.StringVar(&c.framing, "framing", string(d.Framing), "chat: framing, length (4-byte big-endian length, then the text) or line (text, newline)")
	f.IntVar(&c.maxFrame, "max-frame", d.MaxFrame, "chat: largest frame a client may send, in bytes")
	f.IntVar(&c.maxConns, "max-conns", d.MaxConns, "chat: connections served at once; past it ERR server-full")
	f.Float64Var(&c.msgRate, "msg-rate", d.MsgRate, "chat: frames a second per connection (token bucket); 0 turns the limit off")
	f.IntVar(&c.msgBurst, "msg-burst", d.MsgBurst, "chat: burst of the per-connection rate limit; 0 turns the limit off")
	f.DurationVar(&c.idle, "idle-timeout", d.IdleTimeout, "chat: close a connection that sends no frame for this long; 0 turns it off")
}

// options turns the flags into chat options for a server with engine
// settings cfg. The server's largest frame is a quarter of --max-pending
// (or --max-frame if smaller), so one message never overflows a receiver
// that keeps up; a frame must also fit in --max-inbound.
func (c *chatFlags) options(cfg engine.Config) (chat.Options, error) {
	kind, err := frame.ParseKind(c.framing)
	if err != nil {
		return chat.Options{}, fmt.Errorf("--framing: %w", err)
	}
	// Every flag has its default, so a 0 here was typed.
	if c.maxFrame < 1 {
		return chat.Options{}, fmt.Errorf("--max-frame %d: must be at least 1", c.maxFrame)
	}
	if c.maxConns < 1 {
		return chat.Options{}, fmt.Errorf("--max-conns %d: must be at least 1", c.maxConns)
	}
	if c.maxFrame+frame.HeaderLen+2 > cfg.MaxInbound {
		return chat.Options{}, fmt.Errorf("--max-frame %d needs --max-inbound of at least %d (now %d)", c.maxFrame, c.maxFrame+frame.HeaderLen+2, cfg.MaxInbound)
	}
	serverFrame := min(c.maxFrame, cfg.MaxPending/4)
	if serverFrame < chat.MinServerFrame {
		return chat.Options{}, fmt.Errorf("--max-pending %d is too small for chat: want at least %d", cfg.MaxPending, 4*chat.MinServerFrame)
	}
	return chat.Options{
		Framing:        kind,
		MaxFrame:       c.maxFrame,
		MaxServerFrame: serverFrame,
		MaxConns:       c.maxConns,
		MsgRate:        c.msgRate,
		MsgBurst:       c.msgBurst,
		IdleTimeout:    c.idle,
	}, nil
}

// newChatApp builds the chat handler from the serve command's flags.
func newChatApp(o *serveOptions) (handler.Handler, error) {
	if m, err := engine.Lookup(o.model); err == nil && m.Child != nil {
		return nil, fmt.Errorf("--app chat --model %s: each process would be a separate chat; chat across processes needs a cross-process bus, not built yet", m.Name)
	}
	opts, err := o.chat.options(o.cfg)
	if err != nil {
		return nil, err
	}
	h, err := chat.New(opts)
	if err != nil {
		return nil, err
	}
	return h, nil
}
