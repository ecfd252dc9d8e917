package natsbus_test

import (
	"bufio"
	"context"
	"fmt"
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
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ioTimeout bounds every read and write; a failure limit, not a target.
const ioTimeout = 20 * time.Second

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

// client is a chat client in line framing.
type client struct {
	t    *testing.T
	c    net.Conn
	r    *bufio.Reader
	nick string
}

// dial connects to nd and reads HELLO.
func dial(t *testing.T, nd *node) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", nd.addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, c: c, r: bufio.NewReader(c)}
	hello := cl.next()
	nick, ok := strings.CutPrefix(hello, "HELLO tcplab 1 ")
	if !ok {
		t.Fatalf("greeting %q", hello)
	}
	cl.nick = nick
	return cl
}

// join dials nd, takes nick and joins room (if not empty).
func join(t *testing.T, nd *node, nick, room string) *client {
	t.Helper()
	c := dial(t, nd)
	if nick != "" {
		c.call("/nick "+nick, "OK nick "+nick)
		c.nick = nick
	}
	if room != "" {
		c.call("/join "+room, "OK join "+room)
	}
	return c
}

func (c *client) send(lines ...string) {
	c.t.Helper()
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	c.c.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := c.c.Write([]byte(b.String())); err != nil {
		c.t.Fatalf("%s: write: %v", c.nick, err)
	}
}

// read returns the next frame or the error; it waits at most ioTimeout.
func (c *client) read() (string, error) {
	c.c.SetReadDeadline(time.Now().Add(ioTimeout))
	line, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(line, "\n"), nil
}

func (c *client) next() string {
	c.t.Helper()
	f, err := c.read()
	if err != nil {
		c.t.Fatalf("%s: read: %v", c.nick, err)
	}
	return f
}

// expect reads frames until want, skipping presence (JOIN, LEAVE) and
// NOTICE frames; anything else first fails.
func (c *client) expect(want string) {
	c.t.Helper()
	for {
		f := c.next()
		if f == want {
			return
		}
		if !isPresence(f) {
			c.t.Fatalf("%s: got %q, want %q", c.nick, f, want)
		}
	}
}

func isPresence(f string) bool {
	return strings.HasPrefix(f, "JOIN ") || strings.HasPrefix(f, "LEAVE ") || strings.HasPrefix(f, "NOTICE ")
}

// call sends a command and expects its reply.
func (c *client) call(cmd, want string) {
	c.t.Helper()
	c.send(cmd)
	c.expect(want)
}

// sync sends /ping and returns the frames before its PONG.
func (c *client) sync() []string {
	c.t.Helper()
	c.send("/ping")
	var got []string
	for {
		f := c.next()
		if f == "PONG" {
			return got
		}
		got = append(got, f)
	}
}

// quiet checks that nothing but presence arrives for a moment: a
// negative check, so its wait is short and it can only miss a late frame,
// never report a false failure.
func (c *client) quiet() {
	c.t.Helper()
	for _, f := range c.sync() {
		if !isPresence(f) {
			c.t.Fatalf("%s: unexpected %q", c.nick, f)
		}
	}
}

func (c *client) String() string { return fmt.Sprintf("client %s", c.nick) }

// expectPrefix reads frames until one starts with prefix, skipping
// presence and other notices.
func (c *client) expectPrefix(prefix string) string {
	c.t.Helper()
	for {
		f := c.next()
		if strings.HasPrefix(f, prefix) {
			return f
		}
		if !isPresence(f) {
			c.t.Fatalf("%s: got %q, want %s...", c.nick, f, prefix)
		}
	}
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
