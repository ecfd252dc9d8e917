package load

import (
	"strings"
	"testing"
	"time"

	"github.com/tcplab/tcplab/app/echo"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/internal/testkit"
)

// TestIdleHoldsConnectionsThenAnswersEach opens 30 idle connections: while
// they are idle (OnIdle) the server holds all of them and has read
// nothing; then each completes one round trip.
func TestIdleHoldsConnectionsThenAnswersEach(t *testing.T) {
	const n = 30
	srv := testkit.Listen(t, "goroutine", echo.New(), engine.Config{Backlog: 64})
	var atIdle engine.Stats
	onIdle := 0
	res := mustRun(t, Config{Addr: srv.Addr().String(), Conns: n, Idle: true, Duration: 100 * time.Millisecond,
		OnIdle: func() { onIdle++; atIdle = srv.Stats() }})
	if onIdle != 1 {
		t.Fatalf("OnIdle called %d times, want once", onIdle)
	}
	// The server's accepts race the end of the hold only on a machine
	// too busy to accept 30 connections in 100 ms; Accepted says so.
	if atIdle.Open != int64(atIdle.Accepted) || atIdle.BytesIn != 0 {
		t.Errorf("while idle: %d open of %d accepted, %d bytes read; want every accepted one open and nothing read", atIdle.Open, atIdle.Accepted, atIdle.BytesIn)
	}
	if res.Mode != "idle" || res.OKConns != n || res.FailedConns != 0 || res.Msgs != n || res.Latency.Count != n {
		t.Fatalf("mode %s, ok %d failed %d msgs %d latencies %d; want idle, %d round trips", res.Mode, res.OKConns, res.FailedConns, res.Msgs, res.Latency.Count, n)
	}
	if res.Window <= 0 || res.Window > res.Elapsed-0.1 {
		t.Errorf("window %.3fs of %.3fs: want the round trips' time, after the 100 ms idle", res.Window, res.Elapsed)
	}
	if got := srv.Stats().Accepted; got != n {
		t.Errorf("server accepted %d connections, want %d (one each, no reconnects)", got, n)
	}
}

// TestIdleOnSeqServesOne: seq holds its first connection and never
// accepts the rest, whose round trips time out: an idle run proves the
// server holds a connection only by its answer, not by the kernel's
// completed handshake.
func TestIdleOnSeqServesOne(t *testing.T) {
	srv := testkit.Listen(t, "seq", echo.New(), engine.Config{Backlog: 16})
	res := mustRun(t, Config{Addr: srv.Addr().String(), Conns: 5, Idle: true, Duration: 50 * time.Millisecond, ConnectTimeout: 300 * time.Millisecond})
	if res.OKConns != 1 || res.FailedConns != 4 || res.Failures[ReasonTimeout] != 4 {
		t.Fatalf("ok %d failed %d (%v), want 1 and 4 timeouts", res.OKConns, res.FailedConns, res.Failures)
	}
}

func TestIdleRefusesWhatItCannotDo(t *testing.T) {
	for _, cfg := range []Config{
		{App: AppChat, Idle: true}, {Idle: true, PerConn: 1}, {Idle: true, Rate: 10},
	} {
		err := cfg.WithDefaults().Validate()
		if err == nil || !strings.Contains(err.Error(), "idle") {
			t.Errorf("%+v: %v, want an error about idle", cfg, err)
		}
	}
}
