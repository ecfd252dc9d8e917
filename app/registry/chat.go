package registry

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/spf13/pflag"

	"github.com/tcplab/tcplab/app/chat"
	"github.com/tcplab/tcplab/app/chat/natsbus"
	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/handler"
)

// chatFlags defines the chat's parameters: serve's chat flags.
func chatFlags(fs *pflag.FlagSet) {
	d := chat.DefaultOptions()
	fs.String("framing", string(d.Framing), "chat: framing, length (4-byte big-endian length, then the text) or line (text, newline)")
	fs.Int("max-frame", d.MaxFrame, "chat, work: largest frame a client may send, in bytes")
	fs.Int("max-conns", d.MaxConns, "chat: connections served at once; past it ERR server-full")
	fs.Float64("msg-rate", d.MsgRate, "chat: frames a second per connection (token bucket); 0 turns the limit off")
	fs.Int("msg-burst", d.MsgBurst, "chat: burst of the per-connection rate limit; 0 turns the limit off")
	fs.Duration("idle-timeout", d.IdleTimeout, "chat: close a connection that sends no frame for this long; 0 turns it off")
	fs.Int("presence-limit", d.PresenceLimit, "chat: above this many members in a room, JOIN and LEAVE are not sent (/who still lists them); 0 turns the limit off")
	fs.String("bus", "", "chat: how hubs reach each other: local (this process only), embedded (a NATS server in this process, for its fork/prefork children), "+
		"or nats://host:port[,nats://...] (join a NATS cluster with JetStream); default embedded for fork and prefork, local otherwise")
	fs.Int("bus-replicas", 1, "chat: replicas of the nick bucket when this node creates it on a NATS cluster (3 on a 3-server cluster)")
	// The NATS bus's waits (natsbus.Options; 0 is its default). Not in
	// --help: the conformance suite lengthens them, as failure bounds for
	// hubs in many processes on a loaded machine.
	fs.Duration("bus-gather-stall", 0, "chat: a /who or /rooms across nodes ends when no reply came for this long (0: 100ms)")
	fs.Duration("bus-drain-quiet", 0, "chat: at shutdown, wait for events in flight until the bus was quiet this long (0: 200ms)")
	fs.Duration("bus-drain-patience", 0, "chat: at shutdown, wait for events in flight at least this long (0: 2s)")
	for _, name := range []string{"bus-gather-stall", "bus-drain-quiet", "bus-drain-patience"} {
		fs.MarkHidden(name)
	}
}

// chatOptions turns the parameters into chat options for the server. The
// server's largest frame is a quarter of its MaxPending (or --max-frame if
// smaller), so one message never overflows a receiver that keeps up; a
// frame must also fit in MaxInbound.
func chatOptions(p *Params) (chat.Options, error) {
	kind, err := frame.ParseKind(p.String("framing"))
	if err != nil {
		return chat.Options{}, fmt.Errorf("--framing: %w", err)
	}
	maxFrame, maxConns := p.Int("max-frame"), p.Int("max-conns")
	cfg := p.Config
	// Every flag has its default, so a 0 here was asked for.
	if maxFrame < 1 {
		return chat.Options{}, fmt.Errorf("--max-frame %d: must be at least 1", maxFrame)
	}
	if maxConns < 1 {
		return chat.Options{}, fmt.Errorf("--max-conns %d: must be at least 1", maxConns)
	}
	if maxFrame+frame.HeaderLen+2 > cfg.MaxInbound {
		return chat.Options{}, fmt.Errorf("--max-frame %d needs --max-inbound of at least %d (now %d)", maxFrame, maxFrame+frame.HeaderLen+2, cfg.MaxInbound)
	}
	if maxFrame < chat.MinServerFrame {
		return chat.Options{}, fmt.Errorf("--max-frame %d is too small for chat: want at least %d", maxFrame, chat.MinServerFrame)
	}
	serverFrame := min(maxFrame, cfg.MaxPending/4)
	if serverFrame < chat.MinServerFrame {
		return chat.Options{}, fmt.Errorf("--max-pending %d is too small for chat: want at least %d", cfg.MaxPending, 4*chat.MinServerFrame)
	}
	return chat.Options{
		Framing:        kind,
		MaxFrame:       maxFrame,
		MaxServerFrame: serverFrame,
		MaxConns:       maxConns,
		MsgRate:        p.Float64("msg-rate"),
		MsgBurst:       p.Int("msg-burst"),
		IdleTimeout:    p.Duration("idle-timeout"),
		PresenceLimit:  p.Int("presence-limit"),
	}, nil
}

// newChat builds the chat handler from its parameters, and its bus (see
// chatBus).
func newChat(p *Params) (handler.Handler, error) {
	opts, err := chatOptions(p)
	if err != nil {
		return nil, err
	}
	b, err := chatBus(p, opts.MaxServerFrame)
	if err != nil {
		return nil, err
	}
	if b.net != nil {
		opts.Bus = func(n chat.Node) (chat.Bus, error) {
			bus, err := b.net.Join(n)
			if err != nil {
				return nil, RuntimeError{err} // a bus it cannot reach
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
			p.Logger().Warn("chat bus: the NATS server's max payload is too small for the largest message; longer ones get ERR too-long",
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
//     serverFrame bytes, and join it;
//   - nats://...: join that NATS cluster.
//
// The children of a fork or prefork server get --bus set to the URL the
// parent joined (Params.Set), and join it too.
func chatBus(p *Params, serverFrame int) (*chatBusState, error) {
	mode := p.String("bus")
	if mode == "" {
		mode = "local"
		if p.Model.Child != nil {
			mode = "embedded"
		}
	}
	if p.Child && !strings.HasPrefix(mode, "nats://") {
		return nil, fmt.Errorf("--bus %q: a fork or prefork child joins the NATS bus its parent names", mode)
	}
	replicas := p.Int("bus-replicas")
	if replicas < 1 || replicas > 5 {
		return nil, fmt.Errorf("--bus-replicas %d: want 1 to 5", replicas)
	}
	b := &chatBusState{log: p.Logger()}
	switch {
	case mode == "local":
		if p.Model.Child != nil {
			return nil, fmt.Errorf("--bus local --model %s: each process would be a separate chat; use --bus embedded (the default) or nats://", p.Model.Name)
		}
		return b, p.Set("bus", mode)
	case mode == "embedded":
		e, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{MaxPayload: natsbus.PayloadFor(serverFrame)})
		if err != nil {
			return nil, RuntimeError{err}
		}
		b.embedded = e
		mode = e.URL()
		b.log.Info("chat bus: embedded NATS server", "url", mode)
	case strings.HasPrefix(mode, "nats://"):
	default:
		return nil, fmt.Errorf("--bus %q: want local, embedded or nats://host:port[,nats://host:port...]", mode)
	}
	if err := p.Set("bus", mode); err != nil {
		b.close()
		return nil, err
	}
	var err error
	b.net, err = natsbus.New(natsbus.Options{
		URLs: mode, Replicas: replicas, Logger: b.log,
		GatherStall:   p.Duration("bus-gather-stall"),
		DrainQuiet:    p.Duration("bus-drain-quiet"),
		DrainPatience: p.Duration("bus-drain-patience"),
	})
	if err != nil {
		b.close()
		return nil, RuntimeError{err}
	}
	return b, nil
}

// chatBusState is what the chat holds of its bus: the NATS attachment,
// and the embedded server if it started one.
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
