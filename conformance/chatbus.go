package conformance

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcplab/tcplab/app/chat"
	"github.com/tcplab/tcplab/app/chat/natsbus"
)

// Chat on the process models. Under fork and prefork every child process
// is a hub of its own, so the chat cases join the hubs with the NATS bus
// (package natsbus), the way `tcplab serve` does: each case starts an
// embedded NATS server in the test process, and every server the case
// starts is built as `tcplab serve --app chat --bus nats://...` builds it
// (package registry, from the same flag values), so its children rebuild
// it on the same child path as the CLI's. Two servers started by one case
// share the bus, as two hubs on one LocalNet do on the other models.

// chatBusGatherStall is the /who and /rooms gather window the cases use: a
// failure bound for a loaded machine with dozens of child processes, not
// a target.
const chatBusGatherStall = 400 * time.Millisecond

// chatBusDrainQuiet and chatBusDrainPatience bound a case's hub's wait,
// at shutdown, for hubs that do not say they stopped: failure bounds too,
// long enough for a hub in another process to be scheduled on a loaded
// machine. When a server stops, all its hubs stop and say so, so a
// shutdown waits for these only if a hub died.
const (
	chatBusDrainQuiet    = 1500 * time.Millisecond
	chatBusDrainPatience = 3 * time.Second
)

// startOnBus starts a chat server of a process model whose hubs join the
// case's NATS server, starting it first if need be. opts.Bus is not used:
// the case's servers share the NATS server.
func (e *chatEnv) startOnBus(t *testing.T, opts chat.Options) *Server {
	t.Helper()
	if e.nats == nil {
		// Room for the largest server frame of any case (serve's embedded
		// server is sized the same way).
		ns, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{MaxPayload: natsbus.PayloadFor(chat.DefaultMaxFrame)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ns.Shutdown) // registered before the servers': runs after them
		e.nats = ns
	}
	cfg := e.cfg
	h := newApp(t, "chat", chatParams(t, opts, e.nats.URL()), e.model, &cfg)
	return Start(t, e.model, h, cfg)
}

// chatParams are the chat's parameters (serve's flags) for opts on the
// NATS bus at url. A zero MaxFrame or MaxConns is the flag's default; a
// zero rate, idle timeout or presence limit is off, as in chat.Options. The server's
// largest frame comes from --max-frame and the server's MaxPending, as
// serve makes it.
func chatParams(t *testing.T, opts chat.Options, url string) map[string]string {
	t.Helper()
	if opts.MaxServerFrame != 0 {
		t.Fatal("chat.Options.MaxServerFrame has no serve flag: serve derives it")
	}
	p := map[string]string{
		"framing":            string(opts.Framing),
		"msg-rate":           strconv.FormatFloat(opts.MsgRate, 'g', -1, 64),
		"msg-burst":          strconv.Itoa(opts.MsgBurst),
		"idle-timeout":       opts.IdleTimeout.String(),
		"presence-limit":     strconv.Itoa(opts.PresenceLimit),
		"bus":                url,
		"bus-gather-stall":   chatBusGatherStall.String(),
		"bus-drain-quiet":    chatBusDrainQuiet.String(),
		"bus-drain-patience": chatBusDrainPatience.String(),
	}
	if opts.MaxFrame != 0 {
		p["max-frame"] = strconv.Itoa(opts.MaxFrame)
	}
	if opts.MaxConns != 0 {
		p["max-conns"] = strconv.Itoa(opts.MaxConns)
	}
	return p
}

// isServerFull reports whether f refuses a connection for a cap: the
// hub's --max-conns, or a model's own cap (fork's --max-procs), whose
// details differ.
func isServerFull(f string) bool { return strings.HasPrefix(f, "ERR server-full ") }
