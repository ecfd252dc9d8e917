// Package testkit is what every package's tests share: one wait helper
// (Eventually), one launcher for server processes (Serve, over package
// launch: systemd's readiness protocol, never a log line), and one chat
// and line client (Client). Only tests, and the conformance suite, import
// it; TestOnlyTests checks that no production package does.
package testkit

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"testing"
	"time"

	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/launch"
	"github.com/tcplab/tcplab/internal/testkit/wait"
)

// Bound is the failure limit of a wait that should end at once on an idle
// machine (wait.Bound): generous, never a timing assertion.
const Bound = wait.Bound

// ErrNotYet is what a condition with nothing more to say returns while it
// does not hold (wait.ErrNotYet).
var ErrNotYet = wait.ErrNotYet

// Wait checks cond every 10 ms until it returns nil, and returns nil; or,
// once bound has passed, cond's last error (wait.Until). It is Eventually
// for goroutines other than the test's.
func Wait(bound time.Duration, cond func() error) error { return wait.Until(bound, cond) }

// Eventually waits until cond returns nil, and fails the test with what
// and cond's last error if it still does not after bound (wait.Eventually).
func Eventually(t testing.TB, bound time.Duration, what string, cond func() error) {
	t.Helper()
	wait.Eventually(t, bound, what, cond)
}

// Serve starts cmd, a server that reports readiness as `tcplab serve`
// does (launch.Start), and fails the test if it does not get ready. When
// the test ends, a server still running is stopped with SIGTERM and must
// exit 0 within Bound.
func Serve(t testing.TB, cmd *exec.Cmd) *launch.Process {
	t.Helper()
	p, err := TryServe(t, cmd, launch.Options{StacksOnTimeout: true})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TryServe is Serve for a server that may fail to start, with opts (a 0
// ReadyTimeout is Bound): it returns launch.Start's error (a
// *launch.EarlyExit if the process exited first) rather than failing the
// test.
func TryServe(t testing.TB, cmd *exec.Cmd, opts launch.Options) (*launch.Process, error) {
	t.Helper()
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = Bound
	}
	p, err := launch.Start(cmd, opts)
	if err != nil {
		return nil, fmt.Errorf("serve %q: %w", cmd.Args, err)
	}
	t.Cleanup(func() {
		select {
		case <-p.Exited():
			return // the test stopped it, and checked how
		default:
		}
		if err := p.Stop(Bound); err != nil {
			t.Errorf("stopping %q: %v", cmd.Args, err)
		}
	})
	return p, nil
}

// Get fetches url over HTTP (a metrics or pprof endpoint) and returns the
// status code and body, failing the test if it cannot. The request is
// bounded by Bound.
func Get(t testing.TB, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: Bound}
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// Listen serves h under model in this process, on 127.0.0.1 with an
// ephemeral port unless cfg.Addr says otherwise, until the test ends:
// then it shuts the server down (bounded by Bound), requires Serve to
// have returned nil, and closes h if it is an io.Closer. For a server
// process, use Serve; for the conformance suite's checks, conformance.Start.
func Listen(t testing.TB, model string, h handler.Handler, cfg engine.Config) engine.Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	srv, err := engine.Listen(model, h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Bound)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		if c, ok := h.(io.Closer); ok {
			c.Close()
		}
	})
	return srv
}
