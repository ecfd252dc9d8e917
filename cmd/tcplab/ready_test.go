package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tcplab/tcplab/internal/launch"
	"github.com/tcplab/tcplab/internal/sdnotify"
	"github.com/tcplab/tcplab/internal/testkit"
)

// TestServeNotifiesReadyAndStopping: with NOTIFY_SOCKET set (as systemd's
// Type=notify sets it), serve sends READY=1 with its address once it
// listens, and STOPPING=1 when SIGTERM stops it.
func TestServeNotifiesReadyAndStopping(t *testing.T) {
	s := serve(t, "--addr", "127.0.0.1:0", "--app", "echo", "--model", "goroutine")
	if !strings.HasPrefix(s.Addr, "127.0.0.1:") || strings.HasSuffix(s.Addr, ":0") {
		t.Fatalf("%s=%q, want the bound address", launch.AddrVar, s.Addr)
	}
	if want := "serving echo on " + s.Addr + " (model goroutine)"; s.Ready["STATUS"] != want {
		t.Errorf("STATUS=%q, want %q", s.Ready["STATUS"], want)
	}
	if _, ok := s.Ready[launch.MetricsVar]; ok {
		t.Errorf("%s sent without --metrics", launch.MetricsVar)
	}
	echoOnce(t, s.Addr, "ready means serving")
	if s.Notified("STOPPING", "1") {
		t.Error("STOPPING=1 before the server was asked to stop")
	}
	stop(t, s)
	if !s.Notified("STOPPING", "1") {
		t.Error("no STOPPING=1 on SIGTERM")
	}
}

// TestServePrintsItsAddress: --print-addr prints "listening on ADDR" (and
// "metrics on URL" with --metrics) to stdout, and nothing else goes there.
func TestServePrintsItsAddress(t *testing.T) {
	var out syncBuffer
	cmd := serveCmd([]string{"--addr", "127.0.0.1:0", "--print-addr", "--metrics", "0"})
	cmd.Stdout = &out
	s := testkit.Serve(t, cmd)
	want := fmt.Sprintf("listening on %s\nmetrics on %s\n", s.Addr, s.Ready[launch.MetricsVar])
	testkit.Eventually(t, testkit.Bound, "stdout has the two lines", func() error {
		if out.String() != want {
			return fmt.Errorf("stdout %q, want %q", out.String(), want)
		}
		return nil
	})
	stop(t, s)
	if out.String() != want {
		t.Errorf("stdout %q after stopping, want only %q", out.String(), want)
	}

	var quiet syncBuffer
	cmd = serveCmd([]string{"--addr", "127.0.0.1:0"})
	cmd.Stdout = &quiet
	stop(t, testkit.Serve(t, cmd))
	if quiet.String() != "" {
		t.Errorf("stdout without --print-addr: %q, want nothing", quiet.String())
	}
}

// TestServeChildrenDoNotNotify: under fork the parent is the service; the
// child that serves a connection says nothing to NOTIFY_SOCKET, which it
// inherits.
func TestServeChildrenDoNotNotify(t *testing.T) {
	s := serve(t, "--addr", "127.0.0.1:0", "--model", "fork")
	echoOnce(t, s.Addr, "served by a child")
	stop(t, s)
	if s.Notified("READY", "1") {
		t.Error("a second READY=1: a child notified")
	}
}

// TestServeNotifyFailureIsAWarning: a NOTIFY_SOCKET that cannot be reached
// costs a warning, not the service.
func TestServeNotifyFailureIsAWarning(t *testing.T) {
	t.Setenv(sdnotify.Env, t.TempDir()+"/no-such-socket")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--print-addr"}, &out, &errb) }()
	waitFor(t, &out, `^listening on 127\.0\.0\.1:\d+\n$`)
	addr := strings.TrimSuffix(strings.TrimPrefix(out.String(), "listening on "), "\n")
	echoOnce(t, addr, "still serving")
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
	case <-time.After(testkit.Bound):
		t.Fatalf("serve still running %v after its context was cancelled", testkit.Bound)
	}
	if !strings.Contains(errb.String(), "warning: readiness notification failed") {
		t.Errorf("no warning in the log:\n%s", errb.String())
	}
}
