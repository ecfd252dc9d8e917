package conformance

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tcplab/tcplab/app/chat"
	"github.com/tcplab/tcplab/app/chat/natsbus"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/handler"
)

// Chat on the process models. Under fork and prefork every child process
// is a hub of its own, so the chat cases join the hubs with the NATS bus
// (package natsbus), the way `tcplab serve` does: each case starts an
// embedded NATS server in the test process, every server the case starts
// (and every child of theirs) joins it, and the children learn the chat
// options and the bus from engine.Config.AppParams. Two servers started by
// one case share the bus, as two hubs on one LocalNet do on the other
// models.

// AppParams keys for a chat child.
const (
	chatOptionsParam = "chat.options" // chat.Options as JSON, without Bus
	chatBusParam     = "chat.nats"    // natsbus.Options as JSON
)

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
// case's NATS server, starting it first if need be.
func (e *chatEnv) startOnBus(t *testing.T, opts chat.Options) *Server {
	t.Helper()
	if e.nats == nil {
		ns, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ns.Shutdown) // registered before the servers': runs after them
		e.nats = ns
	}
	bo := natsbus.Options{URLs: e.nats.URL(), GatherStall: chatBusGatherStall, DrainQuiet: chatBusDrainQuiet, DrainPatience: chatBusDrainPatience}
	opts.Bus = nil
	ob, err := json.Marshal(opts)
	if err != nil {
		t.Fatal(err)
	}
	nb, err := json.Marshal(bo)
	if err != nil {
		t.Fatal(err)
	}
	h, err := newChatOnBus(opts, bo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() }) // runs after the server's shutdown
	cfg := e.cfg
	cfg.App = "chat"
	cfg.AppParams = map[string]string{chatOptionsParam: string(ob), chatBusParam: string(nb)}
	return Start(t, e.model, h, cfg)
}

func newChatOnBus(opts chat.Options, bo natsbus.Options) (*chat.Handler, error) {
	n, err := natsbus.New(bo)
	if err != nil {
		return nil, err
	}
	opts.Bus = n.Join
	return chat.New(opts)
}

// newChat is the chat's entry in Handlers for a parent: a chat with
// default options on a bus of its own.
func newChat() handler.Handler {
	h, err := chat.New(chat.Options{})
	if err != nil {
		panic(err) // the defaults are valid
	}
	return h
}

// newChatChild rebuilds a parent's chat in a child process from its
// AppParams: the same options, joined to the same NATS server.
func newChatChild(spec engine.ChildSpec) (handler.Handler, error) {
	p := spec.Config.AppParams
	if p[chatOptionsParam] == "" || p[chatBusParam] == "" {
		return nil, fmt.Errorf("chat child: AppParams lack %s or %s", chatOptionsParam, chatBusParam)
	}
	var opts chat.Options
	var bo natsbus.Options
	if err := json.Unmarshal([]byte(p[chatOptionsParam]), &opts); err != nil {
		return nil, fmt.Errorf("chat child: %s: %w", chatOptionsParam, err)
	}
	if err := json.Unmarshal([]byte(p[chatBusParam]), &bo); err != nil {
		return nil, fmt.Errorf("chat child: %s: %w", chatBusParam, err)
	}
	bo.Logger = slog.Default()
	return newChatOnBus(opts, bo)
}

// isServerFull reports whether f refuses a connection for a cap: the
// hub's --max-conns, or a model's own cap (fork's --max-procs), whose
// details differ.
func isServerFull(f string) bool { return strings.HasPrefix(f, "ERR server-full ") }
