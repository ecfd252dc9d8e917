package load

import (
	"context"
	"encoding/json"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcplab/tcplab/app/chat"
	"github.com/tcplab/tcplab/app/work"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/testkit"
)

func TestParseWorkSpec(t *testing.T) {
	for in, want := range map[string]WorkSpec{
		"echo":           {Kind: WorkEcho},
		"sha:1":          {Kind: WorkSha, Rounds: 1},
		"sha:100000000":  {Kind: WorkSha, Rounds: MaxShaRounds},
		"sleep:5ms":      {Kind: WorkSleep, Sleep: 5 * time.Millisecond},
		"sleep:0s":       {Kind: WorkSleep},
		"sleep:1h2us":    {Kind: WorkSleep, Sleep: -1}, // over MaxWorkSleep: refused below
		"sleep:1500us":   {Kind: WorkSleep, Sleep: 1500 * time.Microsecond},
		"sleep:10m0s":    {Kind: WorkSleep, Sleep: MaxWorkSleep},
		"sha:0":          {},
		"sha:-3":         {},
		"sha:100000001":  {},
		"sha:1e3":        {},
		"sha":            {},
		"sha:":           {},
		"sleep:5":        {},
		"sleep:1500ns":   {},
		"sleep:-1ms":     {},
		"echo:x":         {},
		"":               {},
		"SHA:3":          {},
		"cpu:3":          {},
		"sleep:5ms:more": {},
	} {
		got, err := ParseWorkSpec(in)
		if want == (WorkSpec{}) || want.Sleep < 0 {
			if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), strconv.Quote(in)) {
				t.Errorf("%q: (%+v, %v), want a one-line error quoting it", in, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("%q: (%+v, %v), want %+v", in, got, err, want)
		}
		if again, err := ParseWorkSpec(got.String()); err != nil || again != got {
			t.Errorf("%q: String %q parses as (%+v, %v)", in, got.String(), again, err)
		}
	}
	var c struct{ W WorkSpec }
	if err := json.Unmarshal([]byte(`{"W":"sha:7"}`), &c); err != nil || c.W != (WorkSpec{Kind: WorkSha, Rounds: 7}) {
		t.Errorf("JSON: %+v, %v", c.W, err)
	}
	if b, _ := json.Marshal(c); string(b) != `{"W":"sha:7"}` {
		t.Errorf("JSON: %s", b)
	}
	// The zero value (echo, the default) round-trips as nothing, so it
	// stays the zero value a Config of another app must keep.
	var z struct{ W, H WorkSpec }
	b, _ := json.Marshal(z)
	if err := json.Unmarshal(b, &z); err != nil || string(b) != `{"W":"","H":""}` || z.W != (WorkSpec{}) {
		t.Errorf("zero round trip %s: %+v, %v", b, z, err)
	}
}

func TestWorkSettingsAreChecked(t *testing.T) {
	sha := WorkSpec{Kind: WorkSha, Rounds: 10}
	for _, c := range []Config{
		{Work: sha}, {Heavy: 1}, {HeavyWork: sha}, {App: AppChat, Work: sha},
		{App: AppWork, Conns: 2, Heavy: 3, HeavyWork: sha},
		{App: AppWork, Heavy: -1},
		{App: AppWork, Heavy: 1},
		{App: AppWork, HeavyWork: sha},
		{App: AppWork, Work: WorkSpec{Kind: WorkSha}},
		{App: AppWork, Work: WorkSpec{Kind: "cpu"}},
		{App: AppWork, Work: WorkSpec{Kind: WorkSleep, Sleep: time.Nanosecond}},
		{App: AppWork, Size: MaxSize},
	} {
		_, err := Run(context.Background(), c)
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: error %v, want one line", c, err)
		}
	}
}

func serveWork(t *testing.T, opts work.Options) engine.Server {
	t.Helper()
	h, err := work.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return testkit.Listen(t, "goroutine", h, engine.Config{})
}

// TestWorkClassesAreMeasuredApart runs 2 heavy connections (sha) and 3
// light ones (sleep 1 ms) and checks each class's numbers against the
// totals, and the JSON names.
func TestWorkClassesAreMeasuredApart(t *testing.T) {
	srv := serveWork(t, work.Options{})
	res := mustRun(t, Config{App: AppWork, Addr: srv.Addr().String(), Conns: 5, Duration: 300 * time.Millisecond,
		Work: WorkSpec{Kind: WorkSleep, Sleep: time.Millisecond}, Heavy: 2, HeavyWork: WorkSpec{Kind: WorkSha, Rounds: 5000}})
	if res.OKConns != 5 || res.FailedConns+res.DroppedConns != 0 {
		t.Fatalf("ok %d failed %d dropped %d (%v)", res.OKConns, res.FailedConns, res.DroppedConns, res.Failures)
	}
	l, h := res.Classes.Light, res.Classes.Heavy
	if l.Conns != 3 || h.Conns != 2 || l.Spec != "sleep:1ms" || h.Spec != "sha:5000" {
		t.Errorf("classes %+v %+v", l, h)
	}
	if l.Msgs == 0 || h.Msgs == 0 || l.Latency.Count != int64(l.Msgs) || h.Latency.Count != int64(h.Msgs) {
		t.Errorf("light %d msgs (%d latencies), heavy %d (%d)", l.Msgs, l.Latency.Count, h.Msgs, h.Latency.Count)
	}
	// The totals add each connection's proving echo.
	if res.Msgs != l.Msgs+h.Msgs+5 {
		t.Errorf("total %d msgs, classes %d + %d + 5 proving echoes", res.Msgs, l.Msgs, h.Msgs)
	}
	if l.Latency.P50 < 1000 {
		t.Errorf("light p50 %.0f us for a 1 ms sleep", l.Latency.P50)
	}
	if res.SendLate != nil || res.DueMsgs != 0 {
		t.Errorf("closed loop with pacing numbers: %+v", res.Pacing)
	}
	b, _ := json.Marshal(res)
	var got struct {
		Work    map[string]any `json:"work"`
		Classes map[string]struct {
			Latency map[string]float64 `json:"latency_us"`
		} `json:"classes"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Work["light"] != "sleep:1ms" || got.Work["heavy"] != "sha:5000" || got.Work["heavy_conns"] != 2.0 {
		t.Errorf("work %v", got.Work)
	}
	for _, c := range []string{"light", "heavy"} {
		for _, k := range []string{"p50", "p90", "p99", "p999", "max"} {
			if got.Classes[c].Latency[k] <= 0 {
				t.Errorf("classes.%s.latency_us.%s: %v", c, k, got.Classes[c].Latency[k])
			}
		}
	}
}

// wrongSha is a deliberately wrong work server: it answers "sha N TEXT"
// with N-1 rounds (at least 1), and everything else as the real one.
func wrongSha() handler.Handler {
	right, _ := work.New(work.Options{})
	return handler.Func(func(c handler.Conn) handler.Session {
		good := right.Open(c)
		dec, _ := frame.NewDecoder(frame.Length, 0)
		return session(func(in []byte) (int, error) {
			p, n, err := dec.Decode(in)
			if err != nil || n == 0 {
				return 0, err
			}
			r, perr := work.ParseRequest(p, work.Limits{MaxSha: 1000, MaxSleep: time.Second})
			if perr != nil || r.Verb != work.VerbSha {
				return good.Data(in[:n])
			}
			r.Rounds = max(1, r.Rounds-1)
			out, _ := frame.Append(nil, frame.Length, 0, work.AppendReply(nil, r))
			c.Write(out)
			return n, nil
		})
	})
}

// TestShaReplyThatDiffersIsAMismatch runs against a server that does one
// round too few: every connection proves itself (echo), then fails with
// "mismatch" at its first sha reply. An ERR reply is the server's error.
func TestShaReplyThatDiffersIsAMismatch(t *testing.T) {
	srv := testkit.Listen(t, "goroutine", wrongSha(), engine.Config{})
	res := mustRun(t, Config{App: AppWork, Addr: srv.Addr().String(), Conns: 3, Duration: 200 * time.Millisecond,
		Work: WorkSpec{Kind: WorkSha, Rounds: 50}})
	if res.OKConns != 3 || res.DroppedConns != 3 || res.Failures[ReasonMismatch] != 3 || res.Classes.Light.Msgs != 0 {
		t.Fatalf("ok %d dropped %d (%v), light msgs %d: want 3 connections dropped for mismatch, no reply counted",
			res.OKConns, res.DroppedConns, res.Failures, res.Classes.Light.Msgs)
	}
	if !strings.Contains(res.FirstError, "reply") {
		t.Errorf("first error %q", res.FirstError)
	}
	limited := serveWork(t, work.Options{MaxSha: 10})
	res = mustRun(t, Config{App: AppWork, Addr: limited.Addr().String(), Conns: 2, Duration: 200 * time.Millisecond,
		Work: WorkSpec{Kind: WorkSha, Rounds: 11}})
	if res.DroppedConns != 2 || res.Failures["err too-much"] != 2 {
		t.Fatalf("dropped %d (%v), want 2 for err too-much", res.DroppedConns, res.Failures)
	}
}

// TestOpenLoopAccountsForItsSchedule: 4 connections at 200 messages a
// second for 500 ms have exactly 100 messages due (25 each, the first of
// slot i due at i/200 s); every one sent has its send lateness recorded.
func TestOpenLoopAccountsForItsSchedule(t *testing.T) {
	srv := serveWork(t, work.Options{})
	res := mustRun(t, Config{App: AppWork, Addr: srv.Addr().String(), Conns: 4, Rate: 200, Duration: 500 * time.Millisecond})
	if res.DueMsgs != 100 || res.SentMsgs == 0 || res.SentMsgs > 100 || res.SendLate == nil || res.SendLate.Count != int64(res.SentMsgs) {
		t.Fatalf("due %d sent %d, lateness %+v", res.DueMsgs, res.SentMsgs, res.SendLate)
	}
	if res.AchievedRate <= 0 || res.AchievedRate != float64(res.SentMsgs)/res.Window {
		t.Errorf("achieved rate %v for %d sent over %vs", res.AchievedRate, res.SentMsgs, res.Window)
	}
}

// TestRateTheClientCannotReachWarns asks 10,000 messages a second of 2
// connections to a server that takes 5 ms per echo: at most 400 a second
// can be sent, one in flight per connection.
func TestRateTheClientCannotReachWarns(t *testing.T) {
	srv := testkit.Listen(t, "goroutine", echoWith(func() { time.Sleep(5 * time.Millisecond) }, nil), engine.Config{})
	res := mustRun(t, Config{Addr: srv.Addr().String(), Conns: 2, Rate: 10000, Duration: 300 * time.Millisecond})
	if res.DueMsgs != 3000 || res.SentMsgs > 200 {
		t.Fatalf("due %d sent %d", res.DueMsgs, res.SentMsgs)
	}
	if !hasWarning(res, "of the 3000 messages due") {
		t.Errorf("no shortfall warning in %q", res.Warnings)
	}
}

func hasWarning(res *Result, part string) bool {
	for _, w := range res.Warnings {
		if strings.Contains(w, part) {
			return true
		}
	}
	return false
}

// TestLateSendsWarnWhenTheyAreALargePartOfTheLatency feeds the schedule
// lateness values and the result latencies: a warning only where the
// lateness is a quarter of the latency or more, at p50 or at p99.
func TestLateSendsWarnWhenTheyAreALargePartOfTheLatency(t *testing.T) {
	for _, x := range []struct {
		late, lat time.Duration // every message alike
		warn      bool
	}{
		{late: 10 * time.Microsecond, lat: time.Millisecond, warn: false},
		{late: 240 * time.Microsecond, lat: time.Millisecond, warn: false},
		{late: 260 * time.Microsecond, lat: time.Millisecond, warn: true},
		{late: 2 * time.Millisecond, lat: time.Millisecond, warn: true},
	} {
		s := newSchedule(4)
		s.due.Store(200)
		b := lateBatch{s: s, shard: &s.shards[0]}
		for range 200 {
			b.add(x.late)
		}
		b.flush()
		us := float64(x.lat.Microseconds())
		res := &Result{Window: 1, Rate: 200, Latency: Percentiles{Count: 200, P50: us, P99: us}}
		s.fill(res)
		if res.SentMsgs != 200 || res.SendLate.Count != 200 || res.AchievedRate != 200 {
			t.Errorf("sent %d, %d latenesses, %v/s", res.SentMsgs, res.SendLate.Count, res.AchievedRate)
		}
		if got := hasWarning(res, "the generator itself sent late"); got != x.warn {
			t.Errorf("late %v against latency %v: warned %v (%q)", x.late, x.lat, got, res.Warnings)
		}
		if hasWarning(res, "messages due") {
			t.Errorf("every message due was sent, yet: %q", res.Warnings)
		}
	}
}

// TestChatSendersAccountForTheirSchedule: one sender at 50 a second for
// 300 ms has 15 messages due, with the kernel's send buffer and with a
// small one of its own (SendBuffer), and the two receivers get them all.
func TestChatSendersAccountForTheirSchedule(t *testing.T) {
	h, err := chat.New(chat.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := testkit.Listen(t, "goroutine", h, engine.Config{})
	for _, sndbuf := range []int{0, 4096} {
		res := mustRun(t, Config{App: AppChat, Addr: srv.Addr().String(), Conns: 3, Senders: 1, Rate: 50, Duration: 300 * time.Millisecond,
			SendBuffer: sndbuf})
		if res.DueMsgs != 15 || res.SentMsgs != res.Ingress || res.SendLate == nil || res.SendLate.Count != int64(res.SentMsgs) ||
			res.Delivered != 2*res.Ingress {
			t.Fatalf("send buffer %d: due %d sent %d ingress %d delivered %d lateness %+v",
				sndbuf, res.DueMsgs, res.SentMsgs, res.Ingress, res.Delivered, res.SendLate)
		}
	}
}

// TestShaReplyIsComputedByTheClient: the client's own chain gives the
// known digest of "abc" for one round (FIPS 180-2), and the request the
// protocol names.
func TestShaReplyIsComputedByTheClient(t *testing.T) {
	req, reply := WorkSpec{Kind: WorkSha, Rounds: 1}.exchange([]byte("abc"))
	if string(req) != "sha 1 abc" || string(reply) != "OK ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("%q -> %q", req, reply)
	}
	req, reply = WorkSpec{Kind: WorkSleep, Sleep: 5 * time.Millisecond}.exchange(nil)
	if string(req) != "sleep 5000" || string(reply) != "OK slept 5000" {
		t.Errorf("%q -> %q", req, reply)
	}
}

func TestCalibrateShaScalesWithTheTarget(t *testing.T) {
	r1, per := CalibrateSha(time.Millisecond)
	r10, _ := CalibrateSha(10 * time.Millisecond)
	if r1 < 1 || per <= 0 || r10 < 5*r1 {
		t.Errorf("1 ms: %d rounds (%v each); 10 ms: %d rounds", r1, per, r10)
	}
}

// TestCalibrateShaIsNotFooledByABusyCPU sizes rounds twice on one P: alone,
// then with two goroutines spinning beside it, which take two thirds of
// the P's wall time. Timed by the clock, a round would seem to cost about
// three times as much; timed in the thread's CPU time, about the same.
func TestCalibrateShaIsNotFooledByABusyCPU(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	_, alone := CalibrateSha(time.Millisecond)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
			}
		})
	}
	_, busy := CalibrateSha(time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if busy > 2*alone {
		t.Errorf("a round cost %v alone and %v beside two spinning goroutines: the calibration counted their time", alone, busy)
	}
}
