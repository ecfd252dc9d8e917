// Package testkit is what every package's tests share: one wait helper
// (Eventually), one launcher for server processes (Serve, over package
// launch: systemd's readiness protocol, never a log line), and one chat
// and line client (Client). Only tests, and the conformance suite, import
// it; TestOnlyTests checks that no production package does.
package testkit

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"testing"
	"time"

	"github.com/tcplab/tcplab/internal/launch"
)

// Bound is the failure limit of a wait that should end at once on an idle
// machine (a server answering, a counter reaching its value): generous, so
// that only a real hang fails on a loaded one. It is never a timing
// assertion.
const Bound = 30 * time.Second

// pollEvery is how often Eventually checks its condition.
const pollEvery = 10 * time.Millisecond

// ErrNotYet is what a condition with nothing more to say returns while it
// does not hold.
var ErrNotYet = errors.New("not yet")

// Wait checks cond until it returns nil, every 10 ms, and returns nil; or,
// once bound has passed, cond's last error. It is Eventually for
// goroutines other than the test's.
func Wait(bound time.Duration, cond func() error) error {
	deadline := time.Now().Add(bound)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(pollEvery)
	}
}

// Eventually waits until cond returns nil, and fails the test with what
// and cond's last error if it still does not after bound. bound is a
// failure limit (usually Bound), not a timing assertion.
func Eventually(t testing.TB, bound time.Duration, what string, cond func() error) {
	t.Helper()
	if err := Wait(bound, cond); err != nil {
		t.Fatalf("%s: still not so after %v: %v", what, bound, err)
	}
}

// Serve starts cmd, a server that reports readiness as `tcplab serve`
// does (launch.Start), and fails the test if it does not get ready. When
// the test ends, a server still running is stopped with SIGTERM and must
// exit 0 within Bound.
func Serve(t testing.TB, cmd *exec.Cmd) *launch.Process {
	t.Helper()
	p, err := TryServe(t, cmd, launch.Options{})
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
