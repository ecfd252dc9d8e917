package work_test

import (
	"context"
	"testing"
	"time"

	"github.com/tcplab/tcplab/app/work"
	"github.com/tcplab/tcplab/conformance"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/load"
)

// TestMain serves as a fork or prefork child when the test binary is
// re-executed as one, and otherwise runs the tests under goleak.
func TestMain(m *testing.M) { conformance.Main(m) }

// drive serves the work app under model with cfg, runs the load lc
// against it, and stops the server.
func drive(t *testing.T, model string, cfg engine.Config, lc load.Config) *load.Result {
	t.Helper()
	h, err := work.New(work.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.App = "work"
	s := conformance.Start(t, model, h, cfg)
	lc.App, lc.Addr = load.AppWork, s.Addr().String()
	res, err := load.Run(context.Background(), lc)
	if err != nil {
		t.Fatal(err)
	}
	s.Stop(t)
	if res.OKConns != lc.Conns || res.FailedConns+res.DroppedConns != 0 {
		t.Fatalf("%s: ok %d failed %d dropped %d of %d connections (%v, %s)", model, res.OKConns, res.FailedConns, res.DroppedConns, lc.Conns, res.Failures, res.FirstError)
	}
	return res
}

// TestBlockingCallsBlockWhereTheModelRunsTheHandler: 50 clients each send
// "sleep 20000" in closed loop. On one event loop the handler runs on the
// loop, so the sleeps run one after another: at most one per 20 ms. One
// goroutine per connection sleeps them all at once. Only the ratio of the
// two, measured in this run, is asserted (and the loop's bound, which no
// machine can beat: a sleep takes at least its 20 ms).
func TestBlockingCallsBlockWhereTheModelRunsTheHandler(t *testing.T) {
	const sleep = 20 * time.Millisecond
	lc := load.Config{Conns: 50, Duration: 600 * time.Millisecond, ConnectTimeout: 20 * time.Second,
		Work: load.WorkSpec{Kind: load.WorkSleep, Sleep: sleep}}
	loop := drive(t, "reactor", engine.Config{Loops: 1}, lc)
	gor := drive(t, "goroutine", engine.Config{}, lc)
	l, g := loop.Classes.Light, gor.Classes.Light
	t.Logf("sleep:20ms x 50 conns: reactor --loops 1 %.0f req/s (%d), goroutine %.0f req/s (%d)", l.MsgsPerS, l.Msgs, g.MsgsPerS, g.Msgs)
	if most := uint64(loop.Elapsed/sleep.Seconds()) + 1; l.Msgs > most {
		t.Errorf("reactor --loops 1 completed %d sleeps in %.2fs: more than one per 20 ms (%d), so they did not block its loop", l.Msgs, loop.Elapsed, most)
	}
	if l.Msgs == 0 || g.MsgsPerS < 10*l.MsgsPerS {
		t.Errorf("goroutine %.0f req/s against reactor --loops 1 %.0f: want at least 10 times", g.MsgsPerS, l.MsgsPerS)
	}
}

// TestGreedyClientDelaysLightOnesOnOneLoop: one client sends requests of
// about 20 ms of CPU (sha rounds calibrated here, in this build: the race
// detector's is slower), 20 light ones send echo, each connection 25 a
// second. On one event loop a light request that arrives while the heavy
// one runs waits for it (the heavy one keeps the loop busy half the time);
// with a goroutine per connection it runs beside it. The light clients'
// p99 on reactor --loops 1 must be at least 5 times goroutine's, both
// measured in one attempt.
//
// Open loop, not closed: 20 closed-loop clients would keep a core busy
// with their own round trips, and their p99 would measure that queue,
// not the model. The latency compared is the one from each request's
// send (uncorrected): the open loop's count from due times also holds
// the generator's own timer lateness (Result.SendLate), the client's.
//
// On a machine so loaded that this process waits for a core (seen: load
// average 20 to 30 on 2 cores, from other test suites and benchmarks),
// every wall-clock latency holds the kernel's run queue, in both models,
// and goroutine's light p99 is that wait rather than its service. The
// generator measures that noise floor itself: its own send lateness
// (Result.SendLate), how late its timers fire in this process. An attempt
// whose goroutine run saw a send lateness p99 over a fifth of the heavy
// request (the most goroutine's light p99 may be) could not show the
// ratio whatever the models do; it is repeated, up to 3 attempts, and if
// none is quiet enough the test skips, saying so. A quiet attempt must
// show the ratio, or a later one must.
func TestGreedyClientDelaysLightOnesOnOneLoop(t *testing.T) {
	const conns, perConn, heavy, attempts = 21, 25, 20 * time.Millisecond, 3
	valid := 0
	for a := 1; a <= attempts; a++ {
		rounds, per := load.CalibrateSha(heavy)
		lc := load.Config{Conns: conns, Rate: conns * perConn, Duration: time.Second, ConnectTimeout: 20 * time.Second,
			Heavy: 1, HeavyWork: load.WorkSpec{Kind: load.WorkSha, Rounds: rounds}}
		loop := drive(t, "reactor", engine.Config{Loops: 1}, lc)
		gor := drive(t, "goroutine", engine.Config{}, lc)
		l, g := loop.Classes, gor.Classes
		lp, gp := l.Light.LatencyUncorrected.P99, g.Light.LatencyUncorrected.P99
		t.Logf("attempt %d: sha:%d (%v a round); light p50/p99 from send: reactor --loops 1 %.0f/%.0f us, goroutine %.0f/%.0f us (from due: p99 %.0f and %.0f us); heavy p90 %.0f and %.0f us; goroutine run's send lateness p99 %.0f us",
			a, rounds, per, l.Light.LatencyUncorrected.P50, lp, g.Light.LatencyUncorrected.P50, gp,
			l.Light.Latency.P99, g.Light.Latency.P99, l.Heavy.LatencyUncorrected.P90, g.Heavy.LatencyUncorrected.P90, gor.SendLate.P99)
		if l.Heavy.Msgs == 0 || g.Heavy.Msgs == 0 {
			t.Fatalf("no heavy request completed (reactor %d, goroutine %d)", l.Heavy.Msgs, g.Heavy.Msgs)
		}
		if floor := gor.SendLate.P99; floor > float64(heavy.Microseconds())/5 {
			continue // the machine, not the model: see above
		}
		valid++
		if lp >= 5*gp {
			return
		}
	}
	if valid == 0 {
		t.Skipf("in %d attempts the generator's own send lateness p99 was never under %v: too loaded a machine to compare latencies (see the log)", attempts, heavy/5)
	}
	t.Errorf("light p99 on reactor --loops 1 was never 5 times goroutine's in %d valid attempts (see the log)", valid)
}
