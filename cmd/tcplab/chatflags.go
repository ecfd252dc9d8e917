package main

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/tcplab/tcplab/app/chat"
	"github.com/tcplab/tcplab/app/chat/natsbus"
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
	bus      string
	replicas int
}

// chatFlagNames lists the flags addChatFlags defines; they apply to the
// chat app only.
func chatFlagNames() []string {
	return []string{"framing", "max-frame", "max-conns", "msg-rate", "msg-burst", "idle-timeout", "bus", "bus-replicas"}
}

func addChatFlags(f *pflag.FlagSet, c *chatFlags) {
	d := chat.DefaultOptions()
	f.StringVar(&c.framing, "framing", string(d.Framing), "chat: framing, length (4-byte big-endian length, then the text) or line (text, newline)")
	f.IntVar(&c.maxFrame, "max-frame", d.MaxFrame, "chat, work: largest frame a client may send, in bytes")
	f.IntVar(&c.maxConns, "max-conns", d.MaxConns, "chat: connections served at once; past it ERR server-full")
	f.Float64Var(&c.msgRate, "msg-rate", d.MsgRate, "chat: frames a second per connection (token bucket); 0 turns the limit off")
	f.IntVar(&c.msgBurst, "msg-burst", d.MsgBurst, "chat: burst of the per-connection rate limit; 0 turns the limit off")
	f.DurationVar(&c.idle, "idle-timeout", d.IdleTimeout, "chat: close a connection that sends no frame for this long; 0 turns it off")
	f.StringVar(&c.bus, "bus", "", "chat: how hubs reach each other: local (this process only), embedded (a NATS server in this process, for its fork/prefork children), "+
		"or nats://host:port[,nats://...] (join a NATS cluster with JetStream); default embedded for fork and prefork, local otherwise")
	f.IntVar(&c.replicas, "bus-replicas", 1, "chat: replicas of the nick bucket when this node creates it on a NATS cluster (3 on a 3-server cluster)")
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
	if c.maxFrame < chat.MinServerFrame {
		return chat.Options{}, fmt.Errorf("--max-frame %d is too small for chat: want at least %d", c.maxFrame, chat.MinServerFrame)
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

// busParam is the engine.Config.AppParams key under which a fork or
// prefork parent tells its children the NATS URL of the chat bus.
const busParam = "chat.bus"

// newChatApp builds the chat handler from the serve command's flags, and
// its bus (see chatBus).
func newChatApp(o *serveOptions) (handler.Handler, error) {
	opts, err := o.chat.options(o.cfg)
	if err != nil {
		return nil, err
	}
	b, err := o.chatBus(opts.MaxServerFrame)
	if err != nil {
		return nil, err
	}
	if b.net != nil {
		opts.Bus = func(n chat.Node) (chat.Bus, error) {
			bus, err := b.net.Join(n)
			if err != nil {
				return nil, runtimeError{err} // a bus it cannot reach: exit 1
			}
			return bus, nil
		}
	}
	h, err := chat.New(opts)
	if err != nil {
		b.close()
		return nil, err
	}
	if b.net != nil {
		if m := b.net.MaxMessage(); m < opts.MaxServerFrame {
			o.cfg.Logger.Warn("chat bus: the NATS server's max payload is too small for the largest message; longer ones get ERR too-long",
				"longest_message_frame", m, "server_frame_limit", opts.MaxServerFrame,
				"max_payload_needed", opts.MaxServerFrame+natsbus.EventOverhead)
		}
	}
	return &chatApp{Handler: h, bus: b}, nil
}

// chatBus resolves --bus:
//
//   - local: the hub's own in-process bus; refused for fork and prefork,
//     whose processes would each be a separate chat;
//   - embedded (the default for fork and prefork): start a NATS server on
//     127.0.0.1, random port, whose max payload fits a message of
//     serverFrame bytes, and join it; the children learn its URL from
//     engine.Config.AppParams and join it too;
//   - nats://...: join that NATS cluster.
//
// A fork or prefork child always joins the bus its parent names.
func (o *serveOptions) chatBus(serverFrame int) (*chatBusState, error) {
	m, err := engine.Lookup(o.model)
	if err != nil {
		return nil, err
	}
	mode := o.chat.bus
	if mode == "" {
		mode = "local"
		if m.Child != nil {
			mode = "embedded"
		}
	}
	if spec, child, _ := engine.Child(); child {
		if url := spec.Config.AppParams[busParam]; url != "" {
			mode = url
		}
	}
	if o.chat.replicas < 1 || o.chat.replicas > 5 {
		return nil, fmt.Errorf("--bus-replicas %d: want 1 to 5", o.chat.replicas)
	}
	b := &chatBusState{log: o.cfg.Logger}
	switch {
	case mode == "local":
		if m.Child != nil {
			return nil, fmt.Errorf("--bus local --model %s: each process would be a separate chat; use --bus embedded (the default) or nats://", m.Name)
		}
		return b, nil
	case mode == "embedded":
		e, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{MaxPayload: natsbus.PayloadFor(serverFrame)})
		if err != nil {
			return nil, runtimeError{err}
		}
		b.embedded = e
		mode = e.URL()
		o.cfg.Logger.Info("chat bus: embedded NATS server", "url", mode)
	case strings.HasPrefix(mode, "nats://"):
	default:
		return nil, fmt.Errorf("--bus %q: want local, embedded or nats://host:port[,nats://host:port...]", o.chat.bus)
	}
	if o.cfg.AppParams == nil {
		o.cfg.AppParams = map[string]string{}
	}
	o.cfg.AppParams[busParam] = mode
	b.net, err = natsbus.New(natsbus.Options{URLs: mode, Replicas: o.chat.replicas, Logger: o.cfg.Logger})
	if err != nil {
		b.close()
		return nil, runtimeError{err}
	}
	return b, nil
}

// chatBusState is what the serve command holds of a chat bus: the NATS
// attachment, and the embedded server if it started one.
type chatBusState struct {
	net      *natsbus.Net
	embedded *natsbus.Embedded
	log      *slog.Logger
}

func (b *chatBusState) close() {
	if b.embedded != nil {
		b.embedded.Shutdown()
	}
}

// chatApp is the chat handler with its bus; Close detaches the hub, then
// stops the embedded NATS server if there is one.
type chatApp struct {
	*chat.Handler
	bus *chatBusState
}

func (a *chatApp) Close() error {
	err := a.Handler.Close()
	if a.bus.net != nil {
		a.bus.log.Info("chat bus: stats", "stats", fmt.Sprintf("%+v", a.bus.net.Stats()))
	}
	a.bus.close()
	return err
}
