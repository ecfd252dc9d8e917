// Package conformance is the black-box suite every concurrency model must
// pass. It starts real servers on 127.0.0.1 and talks to them over real
// loopback TCP, so a model joins the project by registering with package
// engine and passing this suite; nothing here names a model.
//
// A model's own package runs it with:
//
//	func TestConformance(t *testing.T) { conformance.Run(t, "mymodel") }
package conformance

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/handler"
)

// Timeouts that bound every case. They are failure limits, not
// performance targets: a healthy run finishes far inside them.
const (
	ioTimeout       = 30 * time.Second
	shutdownTimeout = 25 * time.Second
)

// Case is one conformance check against a running server.
type Case struct {
	Name string
	Run  func(t *testing.T, s *Server)
	// App names the app the server runs, with its defaults: an app of
	// `tcplab serve` (package registry) or "probe".
	App string
}

// Run runs every case group against model: the seam checks, each app's
// (echo, chat, work), the hardening checks (frame timeout, per-address
// limits, TLS), and the offload checks (handler.Offload).
func Run(t *testing.T, model string) {
	t.Run("seam", func(t *testing.T) { RunSeam(t, model) })
	t.Run("echo", func(t *testing.T) { RunEcho(t, model) })
	t.Run("chat", func(t *testing.T) { RunChat(t, model) })
	t.Run("work", func(t *testing.T) { RunWork(t, model) })
	t.Run("hardening", func(t *testing.T) { RunHardening(t, model) })
	t.Run("offload", func(t *testing.T) { RunOffload(t, model) })
}

// runCases runs each case on a fresh server, and fails a case that leaves
// goroutines running after its server has shut down.
func runCases(t *testing.T, model string, cfg engine.Config, cases []Case) {
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			checkLeaks(t)
			cfg := cfg
			h := newApp(t, c.App, nil, model, &cfg) // sets cfg.App for a process model's children
			c.Run(t, Start(t, model, h, cfg))
		})
	}
}

// Server is a model under test, serving on a loopback port.
type Server struct {
	engine.Server
	Model engine.Model
	// Config is the server's configuration, defaults filled in.
	Config engine.Config
	served chan error
}

// Concurrency is how many connections the server answers at once: 1 for a
// Sequential model, Model.Concurrency(Config) if the model sets it, and 0
// for no bound.
func (s *Server) Concurrency() int {
	switch {
	case s.Model.Sequential:
		return 1
	case s.Model.Concurrency != nil:
		return s.Model.Concurrency(s.Config)
	}
	return 0
}

// Start binds model on 127.0.0.1 with an ephemeral port, serves h, and
// registers a cleanup that shuts it down and checks that Serve returned
// nil. For a model that re-executes the program (fork, prefork), cfg.App
// (and cfg.AppParams) must say how to rebuild h: "probe" for Probe(), or
// what newApp sets for an app of package registry; and the package's
// TestMain must call Main.
func Start(t testing.TB, model string, h handler.Handler, cfg engine.Config) *Server {
	t.Helper()
	m, err := engine.Lookup(model)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if m.Child != nil && cfg.App == "" {
		t.Fatalf("model %s re-executes the test binary, whose child must rebuild the handler: set Config.App (\"probe\", or an app of package registry)", model)
	}
	srv, err := engine.Listen(model, h, cfg)
	if err != nil {
		if errors.Is(err, engine.ErrUnsupported) {
			t.Skipf("model %s: %v", model, err)
		}
		t.Fatalf("listen %s: %v", model, err)
	}
	s := &Server{Server: srv, Model: m, Config: cfg.WithDefaults(), served: make(chan error, 1)}
	go func() { s.served <- srv.Serve() }()
	t.Cleanup(func() { s.Stop(t) })
	return s
}

// Stop shuts the server down (once) and checks that Serve returned nil.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if s.served == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	s.awaitServe(t)
}

// awaitServe checks, after a Shutdown, that Serve returns nil in time, and
// marks the server stopped.
func (s *Server) awaitServe(t testing.TB) {
	t.Helper()
	select {
	case err := <-s.served:
		if err != nil {
			t.Errorf("Serve returned %v after Shutdown", err)
		}
	case <-time.After(shutdownTimeout):
		t.Errorf("Serve did not return within %v of Shutdown", shutdownTimeout)
	}
	s.served = nil
}

// Dial connects to the server with a deadline for all I/O on the
// connection, and closes it when the test ends.
func (s *Server) Dial(t testing.TB) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr().String(), ioTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", s.Addr(), err)
	}
	c.SetDeadline(time.Now().Add(ioTimeout))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}
