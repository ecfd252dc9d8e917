package conformance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/tcplab/tcplab/app/registry"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/handler"
)

// apps is the registry the suite builds its servers' handlers from:
// tcplab's apps (package registry, the one `tcplab serve` uses), and the
// suite's own handlers, the probe and the offload probe. The process
// models (fork, prefork) re-execute the test binary, and the child
// rebuilds its parent's handler by engine.Config.App and Config.AppParams
// through Registry.Child, as the CLI's children do.
func apps() registry.Registry {
	return append(registry.Apps(), registry.App{
		Name: "probe", Summary: "the seam's probe (tests only)",
		New: func(*registry.Params) (handler.Handler, error) { return Probe(), nil },
	}, registry.App{
		Name: "offload", Summary: "the offload probe (tests only)",
		New: func(*registry.Params) (handler.Handler, error) { return OffloadProbe(), nil },
	})
}

// newApp builds the app name (an entry of apps) with params (its flags'
// values by name; the others have their defaults) for a server of model
// configured by cfg, whose App and AppParams it sets for the children.
// The handler is closed when the test ends, after the server that Start
// registers later has shut down.
func newApp(t testing.TB, name string, params map[string]string, model string, cfg *engine.Config) handler.Handler {
	t.Helper()
	m, err := engine.Lookup(model)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	h, err := apps().New(name, params, m, cfg)
	if err != nil {
		t.Fatalf("app %s: %v", name, err)
	}
	if c, ok := h.(io.Closer); ok {
		t.Cleanup(func() { c.Close() })
	}
	return h
}

// quietLogger logs warnings and errors to stderr, as `tcplab serve`'s
// children do: the apps' own reports (the chat bus's stats at Close) would
// bury the test output.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// Main is TestMain for every package whose tests start servers. In the
// test process it runs the tests and then fails if goroutines leaked
// (goleak). In a child that a fork or prefork server started by
// re-executing the test binary, it runs no tests: it rebuilds the parent's
// handler (apps, Registry.Child), serves the inherited socket through
// engine.Listen until the socket is done or SIGTERM asks for a shutdown,
// and exits.
//
//	func TestMain(m *testing.M) { conformance.Main(m) }
func Main(m *testing.M) {
	spec, child, err := engine.Child()
	if !child {
		goleak.VerifyTestMain(m)
		return
	}
	if err == nil {
		err = serveChild(spec)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "conformance child (pid %d): %v\n", os.Getpid(), err)
		os.Exit(1)
	}
	os.Exit(0)
}

// serveChild serves as a fork or prefork child until the model's Serve
// returns (a fork child's connection ended) or a signal asks for shutdown.
func serveChild(spec engine.ChildSpec) error {
	// From here on SIGTERM asks for a shutdown, even one that arrives
	// while the handler is still being built (the chat's connects to its
	// bus): the child then serves nothing and exits 0.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	h, err := apps().Child(spec, quietLogger())
	if err != nil {
		return err
	}
	if c, ok := h.(io.Closer); ok {
		defer c.Close() // after the server has shut down
	}
	srv, err := engine.Listen(spec.Model, h, spec.Config)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), spec.Config.DrainTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-served; serr != nil {
		err = errors.Join(err, serr)
	}
	return err
}
