package load

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/tcplab/tcplab/app/echo"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/netstat"
	"github.com/tcplab/tcplab/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// session adapts a data function into a session.
type session func(in []byte) (int, error)

func (s session) Data(in []byte) (int, error) { return s(in) }
func (session) Closed(error)                  {}

// echoWith returns an echo handler that calls before (if set) ahead of
// echoing each chunk, and transforms the bytes with change (if set).
func echoWith(before func(), change func([]byte) []byte) handler.Handler {
	return handler.Func(func(c handler.Conn) handler.Session {
		return session(func(in []byte) (int, error) {
			if before != nil {
				before()
			}
			out := in
			if change != nil {
				out = change(bytes.Clone(in))
			}
			c.Write(out)
			return len(in), nil
		})
	})
}

func mustRun(t *testing.T, cfg Config) *Result {
	t.Helper()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.ClientSaturated != (res.ClientCPUPct >= SaturatedPct && res.Elapsed >= minSaturationWall.Seconds()) {
		t.Errorf("client_saturated %v with client_cpu_pct %.1f", res.ClientSaturated, res.ClientCPUPct)
	}
	if n := res.OKConns + res.FailedConns; n > 0 && res.SuccessRate != float64(res.OKConns)/float64(n) {
		t.Errorf("success rate %v for %d ok of %d", res.SuccessRate, res.OKConns, n)
	}
	t.Logf("%s", res.Summary())
	return res
}

// TestDelayedEchoShowsItsDelay runs the closed loop against a server that
// waits 10 ms before each echo.
func TestDelayedEchoShowsItsDelay(t *testing.T) {
	const delay = 10 * time.Millisecond
	srv := testkit.Listen(t, "goroutine", echoWith(func() { time.Sleep(delay) }, nil), engine.Config{})
	res := mustRun(t, Config{Addr: srv.Addr().String(), Conns: 4, Duration: 400 * time.Millisecond})
	if res.OKConns != 4 || res.FailedConns != 0 || res.DroppedConns != 0 {
		t.Fatalf("ok %d failed %d dropped %d, want 4 0 0", res.OKConns, res.FailedConns, res.DroppedConns)
	}
	if res.Latency.P50 < float64(delay.Microseconds()) {
		t.Errorf("p50 %.0fus, want at least %v", res.Latency.P50, delay)
	}
	if res.Latency != res.LatencyUncorrected {
		t.Errorf("closed loop: corrected %+v differs from uncorrected %+v", res.Latency, res.LatencyUncorrected)
	}
	// Closed loop: each connection waits for every echo, so it cannot
	// finish more than one message per delay.
	if most := uint64(4 * (400*time.Millisecond/delay + 1)); res.Msgs == 0 || res.Msgs > most {
		t.Errorf("%d messages, want 1 to %d", res.Msgs, most)
	}
	if res.Bytes != res.Msgs*DefaultSize || res.Latency.Count != int64(res.Msgs) {
		t.Errorf("bytes %d, latencies %d for %d messages", res.Bytes, res.Latency.Count, res.Msgs)
	}
}

// TestServerThatStopsAcceptingFailsConnections holds the seq model's only
// connection for the whole run, so it accepts nobody else: the rest sit in
// its backlog of 2 or are dropped by the kernel, and count as failed.
func TestServerThatStopsAcceptingFailsConnections(t *testing.T) {
	srv := testkit.Listen(t, "seq", echo.New(), engine.Config{Backlog: 2})
	before, err := netstat.ReadListen()
	if err != nil {
		t.Fatal(err)
	}
	res := mustRun(t, Config{Addr: srv.Addr().String(), Conns: 20, Duration: time.Second, ConnectTimeout: 400 * time.Millisecond})
	after, err := netstat.ReadListen()
	if err != nil {
		t.Fatal(err)
	}
	if res.OKConns != 1 || res.FailedConns != 19 || res.Failures[ReasonTimeout] != 19 {
		t.Fatalf("ok %d failed %d (%v), want 1 and 19 timeouts", res.OKConns, res.FailedConns, res.Failures)
	}
	if res.ListenOverflows == 0 || after.Sub(before).Overflows < res.ListenOverflows {
		t.Fatalf("ListenOverflows +%d in the result, +%d around the run; want an increase", res.ListenOverflows, after.Sub(before).Overflows)
	}
}

// TestOpenLoopCountsFromDueTime stalls the server once for 300 ms in an
// open-loop run at 100 messages per second. About 30 messages fall due
// during the stall: measured from their due time they are late (up to
// 300 ms), measured from when the client could send them they are not.
func TestOpenLoopCountsFromDueTime(t *testing.T) {
	var n atomic.Int64
	stall := func() {
		if n.Add(1) == 20 {
			time.Sleep(300 * time.Millisecond)
		}
	}
	srv := testkit.Listen(t, "goroutine", echoWith(stall, nil), engine.Config{})
	res := mustRun(t, Config{Addr: srv.Addr().String(), Conns: 1, Rate: 100, Duration: time.Second})
	if res.Mode != "open" || res.OKConns != 1 {
		t.Fatalf("mode %s, ok %d", res.Mode, res.OKConns)
	}
	if res.Msgs > 101 {
		t.Errorf("%d messages at 100/s for 1s", res.Msgs)
	}
	// 25 or more of at most 101 messages are due 50 ms or more before
	// their echo.
	if res.Latency.P90 < 50e3 {
		t.Errorf("corrected p90 %.0fus, want at least 50ms", res.Latency.P90)
	}
	if res.LatencyUncorrected.Max < 300e3 || res.LatencyUncorrected.P90 >= 50e3 {
		t.Errorf("uncorrected max %.0fus p90 %.0fus: want the stall once, not in the p90", res.LatencyUncorrected.Max, res.LatencyUncorrected.P90)
	}
}

// TestOpenLoopBelowOneMessagePerConnection asks for 10 messages a second
// over 20 connections for a second: each connection's share is one every
// 2 s, so the schedule must start at the start (slot i at i/10 s), not a
// whole interval later, or nothing but the proving echoes is sent.
func TestOpenLoopBelowOneMessagePerConnection(t *testing.T) {
	srv := testkit.Listen(t, "goroutine", echo.New(), engine.Config{})
	res := mustRun(t, Config{Addr: srv.Addr().String(), Conns: 20, Rate: 10, Duration: time.Second})
	if res.OKConns != 20 {
		t.Fatalf("ok %d, want 20", res.OKConns)
	}
	// 10 are due, at 0, 0.1, ..., 0.9 s; allow a few to miss the deadline
	// on a busy machine.
	if paced := res.Msgs - uint64(res.OKConns); paced < 5 || paced > 10 {
		t.Errorf("%d messages besides the %d proving echoes, want about 10", paced, res.OKConns)
	}
}

func TestPerConnOpensNewConnections(t *testing.T) {
	srv := testkit.Listen(t, "goroutine", echo.New(), engine.Config{})
	res := mustRun(t, Config{Addr: srv.Addr().String(), Conns: 2, PerConn: 5, Duration: 300 * time.Millisecond})
	if res.OKConns <= 2 || res.FailedConns != 0 || res.DroppedConns != 0 {
		t.Fatalf("ok %d failed %d dropped %d: want more than the 2 slots", res.OKConns, res.FailedConns, res.DroppedConns)
	}
	if got := srv.Stats().Accepted; got != uint64(res.OKConns) {
		t.Errorf("server accepted %d, client counted %d", got, res.OKConns)
	}
	// Every connection carries 5 messages, but the last in each slot may
	// be cut by the deadline.
	if lo, hi := uint64(5*(res.OKConns-2)), uint64(5*res.OKConns); res.Msgs < lo || res.Msgs > hi {
		t.Errorf("%d messages over %d connections, want %d to %d", res.Msgs, res.OKConns, lo, hi)
	}
}

// remotes is a handler that records each connection's peer address.
type remotes struct {
	mu    sync.Mutex
	ips   map[string]int
	times []time.Time
}

func (rm *remotes) Open(c handler.Conn) handler.Session {
	rm.mu.Lock()
	host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	rm.ips[host]++
	rm.times = append(rm.times, time.Now())
	rm.mu.Unlock()
	return echo.New().Open(c)
}

func TestConnectionsComeFromExtraSourcesPastThePortLimit(t *testing.T) {
	rm := &remotes{ips: map[string]int{}}
	srv := testkit.Listen(t, "goroutine", rm, engine.Config{})
	res := mustRun(t, Config{Addr: srv.Addr().String(), Conns: 5, PortsPerSource: 2, Duration: 100 * time.Millisecond})
	if res.OKConns != 5 || res.Sources != 3 {
		t.Fatalf("ok %d, sources %d; want 5 and 3", res.OKConns, res.Sources)
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	want := map[string]int{"127.0.0.1": 2, "127.0.0.2": 2, "127.0.0.3": 1}
	if len(rm.ips) != len(want) {
		t.Fatalf("server saw %v, want %v", rm.ips, want)
	}
	for ip, n := range want {
		if rm.ips[ip] != n {
			t.Fatalf("server saw %v, want %v", rm.ips, want)
		}
	}
}

func TestConnectRatePacesConnections(t *testing.T) {
	rm := &remotes{ips: map[string]int{}}
	srv := testkit.Listen(t, "goroutine", rm, engine.Config{})
	start := time.Now()
	res := mustRun(t, Config{Addr: srv.Addr().String(), Conns: 5, ConnectRate: 20, Duration: 100 * time.Millisecond})
	if res.OKConns != 5 {
		t.Fatalf("ok %d", res.OKConns)
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	// 5 connections at 20/s: the last is dialed 200 ms after the first, so
	// it cannot reach the server sooner after the run began. (Measured
	// from the start, not from the first arrival: a busy server may see
	// the first late, which would shorten the span without any fault.)
	if last := rm.times[len(rm.times)-1].Sub(start); last < 190*time.Millisecond {
		t.Fatalf("5 connections at 20/s: the last arrived %v after the start", last)
	}
}

func TestWrongEchoAndRefusedConnectionsFail(t *testing.T) {
	srv := testkit.Listen(t, "goroutine", echoWith(nil, bytes.ToUpper), engine.Config{})
	res := mustRun(t, Config{Addr: srv.Addr().String(), Conns: 3, Duration: 100 * time.Millisecond})
	if res.OKConns != 0 || res.Failures[ReasonMismatch] != 3 || !strings.Contains(res.FirstError, "differs") ||
		!strings.Contains(res.FirstError, `got "CONN `) {
		t.Fatalf("ok %d failures %v (%s), want 3 mismatches that show what came back", res.OKConns, res.Failures, res.FirstError)
	}
	if !strings.Contains(res.Summary(), "\nfirst error  "+res.FirstError+"\n") {
		t.Errorf("the summary does not show the first error:\n%s", res.Summary())
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	res = mustRun(t, Config{Addr: addr, Conns: 3, Duration: 100 * time.Millisecond})
	if res.OKConns != 0 || res.Failures[ReasonRefused] != 3 {
		t.Fatalf("ok %d failures %v, want 3 refused", res.OKConns, res.Failures)
	}
	// A run that ended as it began (every connection refused) says it
	// measured nothing, rather than print rates and a CPU share of a few
	// milliseconds.
	if res.Window > res.Elapsed {
		t.Errorf("window %.3fs of a run of %.3fs", res.Window, res.Elapsed)
	}
	s := res.Summary()
	for _, want := range []string{"throughput   none: no message completed", "latency      none measured", "client cpu   not measured: the run lasted "} {
		if res.Elapsed < minSaturationWall.Seconds() && !strings.Contains(s, want) {
			t.Errorf("summary of a run of %.3fs lacks %q:\n%s", res.Elapsed, want, s)
		}
	}
}

// TestEchoRunAgainstAChatServerSaysSo: an echo run against a chat server
// fails with what came back, named as a chat server's greeting, and the
// flags to use. A length server refuses the echo as a length header; a
// line server waits for a newline, until the connect timeout.
func TestEchoRunAgainstAChatServerSaysSo(t *testing.T) {
	for kind, try := range map[frame.Kind]string{frame.Length: "try --app chat", frame.Line: "try --app chat --framing line"} {
		addr := chatServer(t, kind)
		res := mustRun(t, Config{Addr: addr, Conns: 2, Duration: 100 * time.Millisecond, ConnectTimeout: 300 * time.Millisecond})
		if res.OKConns != 0 || res.Failures[ReasonMismatch] != 2 || !strings.Contains(res.FirstError, `the server greeted with "`) ||
			!strings.Contains(res.FirstError, "HELLO tcplab 1 guest-") || !strings.HasSuffix(res.FirstError, "it is a chat server; "+try) {
			t.Errorf("%s chat server: ok %d, failures %v, first error %q; want mismatches naming a chat server and %q", kind, res.OKConns, res.Failures, res.FirstError, try)
		}
	}
}

func TestCancelEndsTheRunWithoutBlamingTheServer(t *testing.T) {
	srv := testkit.Listen(t, "goroutine", echoWith(func() { time.Sleep(50 * time.Millisecond) }, nil), engine.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	res, err := Run(ctx, Config{Addr: srv.Addr().String(), Conns: 3, Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if res.Elapsed > 10 {
		t.Errorf("a cancelled run took %.1fs", res.Elapsed)
	}
	if res.OKConns != 3 || res.FailedConns != 0 || res.DroppedConns != 0 {
		t.Fatalf("ok %d failed %d dropped %d (%v)", res.OKConns, res.FailedConns, res.DroppedConns, res.Failures)
	}
	// The rates count over the 200 ms that ran, not the minute asked for.
	if !res.Interrupted || res.Window <= 0 || res.Window > res.Elapsed {
		t.Errorf("interrupted %v, window %.3fs of %.3fs elapsed", res.Interrupted, res.Window, res.Elapsed)
	}
	if res.Msgs == 0 || res.MsgsPerS != float64(res.Msgs)/res.Window || res.MsgsPerS*res.Elapsed < float64(res.Msgs) {
		t.Errorf("%d messages in %.3fs: %.1f msgs/s", res.Msgs, res.Elapsed, res.MsgsPerS)
	}
	if !strings.Contains(res.Summary(), "interrupted") {
		t.Errorf("the summary does not say the run was interrupted:\n%s", res.Summary())
	}
}

// TestRatesCountTheTimeMeasured runs for 1 ns against a server that takes
// 20 ms per echo: the proving echoes complete 20 ms or more after the
// start, so the rate is at most their number per 20 ms, not per 1 ns.
func TestRatesCountTheTimeMeasured(t *testing.T) {
	srv := testkit.Listen(t, "goroutine", echoWith(func() { time.Sleep(20 * time.Millisecond) }, nil), engine.Config{})
	res := mustRun(t, Config{Addr: srv.Addr().String(), Conns: 2, Duration: time.Nanosecond})
	if res.OKConns != 2 || res.Msgs != 2 || res.Interrupted {
		t.Fatalf("ok %d, %d messages, interrupted %v; want 2, 2, false", res.OKConns, res.Msgs, res.Interrupted)
	}
	if res.Window < 0.02 || res.Window > res.Elapsed {
		t.Errorf("window %.6fs, want from 20 ms to the %.3fs elapsed", res.Window, res.Elapsed)
	}
	if res.MsgsPerS > 2/0.02 || res.BytesPerS > 2*DefaultSize/0.02 {
		t.Errorf("%.0f msgs/s, %.0f bytes/s for 2 messages of which the last took 20 ms or more", res.MsgsPerS, res.BytesPerS)
	}
	if res.Latency.Count != 2 {
		t.Errorf("%d latencies", res.Latency.Count)
	}
}

func TestRaiseNofile(t *testing.T) {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		t.Fatal(err)
	}
	lower := r
	lower.Cur = min(r.Max, 256)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lower); err != nil {
		t.Fatal(err)
	}
	soft, hard, err := RaiseNofile()
	if err != nil || soft != r.Max || hard != r.Max {
		t.Fatalf("RaiseNofile = %d, %d, %v; want the hard limit %d", soft, hard, err, r.Max)
	}
	var now unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &now); err != nil || now.Cur != r.Max {
		t.Fatalf("soft limit now %d, %v", now.Cur, err)
	}
}

// TestBuffersPastTheBudgetAreRefused checks, without running (which
// would allocate them), that a run whose message buffers pass MaxBuffers
// is refused before it starts, naming both flags.
func TestBuffersPastTheBudgetAreRefused(t *testing.T) {
	for _, c := range []Config{{Conns: 10000, Size: 1 << 20}, {App: AppChat, Conns: 1025, Size: 1 << 19}} {
		err := c.WithDefaults().Validate()
		if err == nil || !strings.Contains(err.Error(), "--conns") || !strings.Contains(err.Error(), "--size") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%d conns x %d bytes: %v; want one line naming --conns and --size", c.Conns, c.Size, err)
		}
	}
	if err := (Config{Conns: 1024, Size: 1 << 19}).WithDefaults().Validate(); err != nil {
		t.Errorf("exactly the budget: %v", err)
	}
}

func TestBadConfigIsOneLineError(t *testing.T) {
	for _, c := range []Config{
		{Addr: "nope"}, {App: "http"}, {Conns: -1}, {Duration: -time.Second}, {Size: MaxSize + 1},
		{Rate: -1}, {ConnectRate: -2}, {ConnectTimeout: -1}, {PerConn: -1},
		{App: AppChat, PerConn: 3}, {App: AppChat, Conns: 2, Senders: 3}, {App: AppChat, Framing: "xml"},
		{App: AppChat, Room: "bad room"}, {App: AppChat, SendBuffer: -1},
	} {
		_, err := Run(context.Background(), c)
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: error %v, want one line", c, err)
		}
	}
}

// TestSeqServesOneClientPerRun: seq serves one connection until it closes.
// With a connect timeout longer than the run, the generator must not
// close its one served connection at the deadline and so let seq serve the
// clients still waiting: they were not served during the run, and a
// client that kept its connection would have kept them waiting. Exactly
// one succeeds, however the timings fall.
func TestSeqServesOneClientPerRun(t *testing.T) {
	srv := testkit.Listen(t, "seq", echo.New(), engine.Config{Backlog: 16})
	res := mustRun(t, Config{Addr: srv.Addr().String(), Conns: 5, Duration: 200 * time.Millisecond, ConnectTimeout: 600 * time.Millisecond})
	if res.OKConns != 1 || res.FailedConns != 4 || res.Failures[ReasonTimeout] != 4 {
		t.Fatalf("ok %d failed %d (%v), want 1 and 4 timeouts", res.OKConns, res.FailedConns, res.Failures)
	}
}
