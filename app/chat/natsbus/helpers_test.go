package natsbus_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tcplab/tcplab/app/chat"
	"github.com/tcplab/tcplab/app/chat/natsbus"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ioTimeout bounds every wait; a failure limit, not a target.
const ioTimeout = testkit.Bound

// startNATS starts an embedded NATS server for the test.
func startNATS(t *testing.T, o natsbus.EmbeddedOptions) *natsbus.Embedded {
	t.Helper()
	e, err := natsbus.StartEmbedded(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

// node is a tcplab chat server (model goroutine, line framing) on its own
// loopback port, attached to NATS.
type node struct {
	addr string
	net  *natsbus.Net
	srv  engine.Server
	h    *chat.Handler
	done chan error
}

// testBusOptions are bus options for tests: the timeouts are failure
// limits, generous for a loaded machine.
func testBusOptions(urls string) natsbus.Options {
	return natsbus.Options{
		URLs: urls, GatherStall: 300 * time.Millisecond, GatherMax: 3 * time.Second, Timeout: 5 * time.Second,
		DrainPatience: 50 * time.Millisecond, // the nodes of a test stop one by one
		Logger:        slog.New(slog.DiscardHandler),
	}
}

func startNode(t *testing.T, o natsbus.Options) *node {
	t.Helper()
	return startNodeOn(t, "goroutine", engine.Config{}, o)
}

// startNodeOn is startNode under model, with cfg.
func startNodeOn(t *testing.T, model string, cfg engine.Config, o natsbus.Options) *node {
	t.Helper()
	n, err := natsbus.New(o)
	if err != nil {
		t.Fatal(err)
	}
	h, err := chat.New(chat.Options{Framing: frame.Line, Bus: n.Join})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Addr = "127.0.0.1:0"
	srv, err := engine.Listen(model, h, cfg)
	if err != nil {
		h.Close()
		t.Fatal(err)
	}
	nd := &node{addr: srv.Addr().String(), net: n, srv: srv, h: h, done: make(chan error, 1)}
	go func() { nd.done <- srv.Serve() }()
	t.Cleanup(func() { nd.stop(t) })
	return nd
}

// stop shuts the node down (once).
func (nd *node) stop(t *testing.T) {
	t.Helper()
	if nd.done == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := nd.srv.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if err := <-nd.done; err != nil {
		t.Errorf("serve: %v", err)
	}
	nd.done = nil
	nd.h.Close()
}

// The tests' clients speak line framing, and their reads pass over
// presence and notices (isPresence), which other nodes deliver when they
// will. A test that counts notices reads with Skip nil.

// dial connects to nd and reads HELLO.
func dial(t *testing.T, nd *node) *testkit.Client {
	t.Helper()
	c, err := testkit.Dialer{Skip: isPresence}.Hello(t, nd.addr, frame.Line)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// join dials nd, takes nick and joins room (if not empty).
func join(t *testing.T, nd *node, nick, room string) *testkit.Client {
	t.Helper()
	return testkit.Dialer{Skip: isPresence}.Join(t, nd.addr, frame.Line, nick, room)
}

func isPresence(f string) bool {
	return testkit.Presence(f) || strings.HasPrefix(f, "NOTICE ")
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
