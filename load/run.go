package load

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcplab/tcplab/internal/cpupin"
	"github.com/tcplab/tcplab/internal/english"
	"github.com/tcplab/tcplab/internal/netstat"
)

// SaturatedPct is the client CPU use, in percent of one core, from which a
// run is flagged as limited by the client.
const SaturatedPct = 90

// minSaturationWall is the shortest run whose client CPU use can flag it as
// saturated.
const minSaturationWall = 100 * time.Millisecond

// Result is what a run measured. Its JSON form is what `tcplab load --json`
// prints and what `tcplab bench` stores per cell.
type Result struct {
	// The run's settings, after defaults.
	App      string  `json:"app"`
	Mode     string  `json:"mode"` // "closed", "open", "chat" or "idle"
	Addr     string  `json:"addr"`
	Conns    int     `json:"conns"`
	Duration float64 `json:"duration_s"`
	Size     int     `json:"size"`
	Rate     float64 `json:"rate"`
	PerConn  int     `json:"per_conn"`
	Senders  int     `json:"senders,omitempty"`
	Sources  int     `json:"sources"` // source addresses used; 1 means the kernel's choice

	// OKConns counts connections whose first round trip completed within
	// the connect timeout; FailedConns those that did not. With PerConn
	// they count every connection opened during the run.
	OKConns     int `json:"ok_conns"`
	FailedConns int `json:"failed_conns"`
	// DroppedConns counts successful connections that ended before the
	// run did (reset, closed, or a chat BYE).
	DroppedConns int `json:"dropped_conns"`
	// SuccessRate is OKConns / (OKConns + FailedConns).
	SuccessRate float64 `json:"success_rate"`
	// Failures counts failed and dropped connections by reason.
	Failures map[string]int `json:"failures"`
	// FirstError is the first failure's error text, for diagnosis.
	FirstError string `json:"first_error,omitempty"`

	// Msgs and Bytes count completed messages: echoes received, or chat
	// messages delivered to receivers. MsgsPerS and BytesPerS divide them
	// by Window.
	Msgs      uint64  `json:"msgs"`
	Bytes     uint64  `json:"bytes"`
	MsgsPerS  float64 `json:"msgs_per_s"`
	BytesPerS float64 `json:"bytes_per_s"`
	// Window is the time the rates are measured over, in seconds: from
	// the start of sending (for chat, once every member has joined) to the
	// end of Duration, or to the interruption if that came first, and on
	// to the last message's completion if that came later.
	Window float64 `json:"window_s"`
	// Interrupted is set when the run was cancelled before it ended (a
	// SIGINT to `tcplab load`, a Ctrl-C to `tcplab bench`): its numbers
	// cover only the part that ran.
	Interrupted bool `json:"interrupted"`

	// Latency counts from the time each message was due (corrected for
	// coordinated omission); LatencyUncorrected from the time it was
	// written. In closed loop nothing is due before it is sent, so the two
	// are equal. Microseconds.
	Latency            Percentiles `json:"latency_us"`
	LatencyUncorrected Percentiles `json:"latency_uncorrected_us"`

	// Chat only. Ingress counts messages the senders wrote, Delivered the
	// MSG frames the receivers got (each message goes to every other
	// member). FairnessMin and FairnessMax are the smallest and largest
	// share of the messages it should have received that one receiver got.
	Ingress       uint64         `json:"ingress_msgs,omitempty"`
	IngressPerS   float64        `json:"ingress_msgs_per_s,omitempty"`
	Delivered     uint64         `json:"delivered_msgs,omitempty"`
	DeliveredPerS float64        `json:"delivered_msgs_per_s,omitempty"`
	FairnessMin   float64        `json:"fairness_min,omitempty"`
	FairnessMax   float64        `json:"fairness_max,omitempty"`
	ServerErrors  map[string]int `json:"server_errors,omitempty"` // ERR codes received, e.g. rate-limited

	// Work only: the requests, and the numbers of each class of
	// connection (work.go).
	Work    *WorkSpecs `json:"work,omitempty"`
	Classes *Classes   `json:"classes,omitempty"`

	// Pacing is the open loop's and the chat senders' account of their
	// own schedule: how late they sent, and the rate they reached
	// (late.go).
	Pacing

	// ClientCPU is this process's CPU time during the run, and
	// ClientCPUPct that as a percentage of one core over the run's wall
	// time (it can pass 100 on several cores). ClientSaturated is set from
	// SaturatedPct up, in runs of 100 ms or more: the client, not the
	// server, may be the bottleneck.
	ClientCPU       float64 `json:"client_cpu_s"`
	ClientCPUPct    float64 `json:"client_cpu_pct"`
	ClientCPUs      string  `json:"client_cpus"` // the CPUs this process may run on
	ClientSaturated bool    `json:"client_saturated"`

	// ListenOverflows and ListenDrops are the kernel's TcpExt counter
	// deltas over the run, for this machine's network namespace: the
	// evidence of connections the server's accept queue dropped.
	ListenOverflows uint64 `json:"listen_overflows"`
	ListenDrops     uint64 `json:"listen_drops"`

	// Elapsed is the run's wall time, connecting and draining included.
	Elapsed float64 `json:"elapsed_s"`
	// NofileSoft is the RLIMIT_NOFILE soft limit after raising it.
	NofileSoft uint64 `json:"nofile_soft"`
	// Warnings explain results to read with care.
	Warnings []string `json:"warnings,omitempty"`
}

// run is one Run's shared state.
type run struct {
	cfg      Config
	ctx      context.Context
	start    time.Time
	deadline time.Time // no message is sent after it
	// sendStart is when sending starts: the start for echo, once every
	// member has joined for chat.
	sendStart time.Time
	// cancelledAt is when ctx was cancelled, in nanoseconds from start,
	// plus one; 0 while it is not.
	cancelledAt atomic.Int64
	src         []*net.TCPAddr
	rec         *recorder
	sched       *schedule // the open loop's own pacing (late.go)

	ok, failed, dropped atomic.Int64
	mu                  sync.Mutex
	failures            map[string]int
	firstErr            string
}

// Run drives the server at cfg.Addr until cfg.Duration has passed (or ctx
// is cancelled) and returns what it measured. It returns an error only for
// a Config that cannot run; connections that fail are part of the result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	res := &Result{
		App: cfg.App, Mode: "closed", Addr: cfg.Addr, Conns: cfg.Conns, Duration: cfg.Duration.Seconds(),
		Size: cfg.Size, Rate: cfg.Rate, PerConn: cfg.PerConn, Sources: 1,
	}
	switch {
	case cfg.App == AppChat:
		res.Mode, res.Senders = "chat", cfg.Senders
	case cfg.Rate > 0:
		res.Mode = "open"
	case cfg.Idle:
		res.Mode = "idle"
	}
	soft, _, err := RaiseNofile()
	if err != nil {
		res.Warnings = append(res.Warnings, err.Error())
	}
	res.NofileSoft = soft
	if need := uint64(cfg.Conns) + 64; soft < need {
		res.Warnings = append(res.Warnings, fmt.Sprintf("nofile limit %d is below the %d connections plus headroom; some will fail with no-fds", soft, cfg.Conns))
	}
	src, warn, err := sources(cfg.Addr, cfg.Conns, cfg.PortsPerSource)
	if err != nil {
		return nil, err
	}
	if warn != "" {
		res.Warnings = append(res.Warnings, warn)
	}
	res.Sources = max(1, len(src))

	var wk *workRun
	if cfg.App == AppWork {
		wk = newWorkRun(cfg) // computes the expected sha replies, before the clock starts
	}
	r := &run{cfg: cfg, ctx: ctx, src: src, rec: newRecorder(cfg.Conns), sched: newSchedule(cfg.Conns), failures: map[string]int{}}
	kernelBefore, kerr := netstat.ReadListen()
	cpuBefore, cerr := selfCPU()
	r.start = time.Now()
	wallBefore := r.start
	r.deadline = r.start.Add(cfg.Duration)
	r.sendStart = r.start
	stopWatch := context.AfterFunc(ctx, func() { r.cancelledAt.Store(int64(time.Since(r.start)) + 1) })
	defer stopWatch()

	stopProgress := r.progress()
	var chat *chatRun
	switch {
	case cfg.App == AppChat:
		chat = r.runChat()
	case cfg.App == AppWork:
		r.runSlots(func(i int) exchanger { return wk.newExchanger(r, i) })
	case cfg.Idle:
		r.runIdle()
	default:
		r.runEcho()
	}
	stopProgress()

	cpuAfter, cerr2 := selfCPU()
	elapsed := time.Since(r.start)
	res.Elapsed = elapsed.Seconds()
	if err := errors.Join(cerr, cerr2); err == nil {
		cpu := cpuAfter - cpuBefore
		res.ClientCPU = cpu.Seconds()
		res.ClientCPUPct = 100 * cpu.Seconds() / time.Since(wallBefore).Seconds()
		// Below minSaturationWall the ratio is noise.
		res.ClientSaturated = res.ClientCPUPct >= SaturatedPct && elapsed >= minSaturationWall
	}
	if kerr == nil {
		if after, err := netstat.ReadListen(); err == nil {
			d := after.Sub(kernelBefore)
			res.ListenOverflows, res.ListenDrops = d.Overflows, d.Drops
		}
	}
	if cpus, err := cpupin.Affinity(0); err == nil {
		res.ClientCPUs = cpupin.FormatList(cpus)
	}
	if res.ClientSaturated {
		res.Warnings = append(res.Warnings, fmt.Sprintf("the load generator used %.0f%% of a core: the client may be the bottleneck (GOMAXPROCS %d)", res.ClientCPUPct, runtime.GOMAXPROCS(0)))
	}

	res.OKConns, res.FailedConns, res.DroppedConns = int(r.ok.Load()), int(r.failed.Load()), int(r.dropped.Load())
	if n := res.OKConns + res.FailedConns; n > 0 {
		res.SuccessRate = float64(res.OKConns) / float64(n)
	}
	res.Failures, res.FirstError = r.failures, r.firstErr
	res.Msgs, res.Bytes = r.rec.msgs.Load(), r.rec.bytes.Load()
	res.Interrupted = ctx.Err() != nil
	res.Window = r.window(elapsed).Seconds()
	if secs := res.Window; secs > 0 {
		res.MsgsPerS, res.BytesPerS = float64(res.Msgs)/secs, float64(res.Bytes)/secs
	}
	res.Latency, res.LatencyUncorrected = r.rec.merged()
	if chat != nil {
		chat.fill(res, res.Window)
	}
	if wk != nil {
		wk.fill(res, cfg)
	}
	r.sched.fill(res)
	return res, nil
}

// window is the time the run's rates are measured over: from sendStart
// to the deadline, or to the cancellation or the end of the run (every
// connection failed) if that came first, and on to the last message's
// completion if that came later. elapsed is the run's whole length, an
// upper bound on a cancellation time not yet recorded.
func (r *run) window(elapsed time.Duration) time.Duration {
	end := min(r.deadline.Sub(r.start), elapsed)
	if r.ctx.Err() != nil {
		at := elapsed
		if c := r.cancelledAt.Load(); c > 0 {
			at = time.Duration(c - 1)
		}
		end = min(end, at)
	}
	end = max(end, time.Duration(r.rec.last.Load()))
	return max(0, end-r.sendStart.Sub(r.start))
}

// selfCPU is this process's user plus system CPU time. getrusage is
// precise to the microsecond, where /proc/PID/stat counts 10 ms ticks.
func selfCPU() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// succeeded and fail count a connection's outcome.
func (r *run) succeeded() { r.ok.Add(1) }

func (r *run) fail(err error, dropped bool) {
	if dropped {
		r.dropped.Add(1)
	} else {
		r.failed.Add(1)
	}
	why := reason(err)
	r.mu.Lock()
	r.failures[why]++
	if r.firstErr == "" {
		r.firstErr = err.Error()
	}
	r.mu.Unlock()
}

// ended reports whether err on an established connection just means the
// run is over (its deadline passed, or ctx was cancelled).
func (r *run) ended(err error) bool {
	return r.ctx.Err() != nil || !time.Now().Before(r.deadline) && reason(err) == ReasonTimeout
}

// slotStart is when connection slot i first connects.
func (r *run) slotStart(i int) time.Time {
	if r.cfg.ConnectRate <= 0 {
		return r.start
	}
	return r.start.Add(time.Duration(float64(i) / r.cfg.ConnectRate * float64(time.Second)))
}

// sleepUntil waits for t or ctx; it reports false if ctx ended first.
func (r *run) sleepUntil(t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return r.ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-r.ctx.Done():
		return false
	}
}

// watch makes c's blocked reads and writes return when ctx is cancelled.
// Call the returned function when done with c.
func (r *run) watch(c net.Conn) (stop func() bool) {
	return context.AfterFunc(r.ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
}

// total is the run's planned length, for progress.
func (r *run) total() time.Duration {
	t := r.cfg.Duration
	if r.cfg.ConnectRate > 0 {
		t = max(t, time.Duration(float64(r.cfg.Conns)/r.cfg.ConnectRate*float64(time.Second)))
	}
	if r.cfg.App == AppChat || r.cfg.Idle {
		t += r.cfg.ConnectTimeout
	}
	return t
}

// progress calls cfg.Progress until the returned stop is called.
func (r *run) progress() (stop func()) {
	if r.cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				r.cfg.Progress(Progress{
					Elapsed: time.Since(r.start), Total: r.total(),
					OK: int(r.ok.Load()), Failed: int(r.failed.Load()), Msgs: r.rec.msgs.Load(),
				})
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// Summary renders a result as a few lines for people.
func (res *Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s loop against %s: %s for %gs", res.App, res.Mode, res.Addr, english.Count(res.Conns, "connection"), res.Duration)
	if res.Mode == "chat" {
		b.Reset()
		fmt.Fprintf(&b, "chat against %s: %s, %s, for %gs", res.Addr, english.Count(res.Conns, "connection"), english.Count(res.Senders, "sender"), res.Duration)
	}
	if res.Interrupted {
		b.WriteString(" (interrupted: the numbers cover only the part that ran)")
	}
	fmt.Fprintf(&b, "\nconnections  ok %d  failed %d  dropped %d  (success %.1f%%)", res.OKConns, res.FailedConns, res.DroppedConns, 100*res.SuccessRate)
	if len(res.Failures) > 0 {
		fmt.Fprintf(&b, "  [%s]", counts(res.Failures))
	}
	if res.FirstError != "" {
		fmt.Fprintf(&b, "\nfirst error  %s", res.FirstError)
	}
	if res.Msgs == 0 {
		b.WriteString("\nthroughput   none: no message completed")
	} else {
		fmt.Fprintf(&b, "\nthroughput   %.0f msgs/s  %.2f MB/s  (%s over %.3gs)", res.MsgsPerS, res.BytesPerS/1e6, english.Count(int(res.Msgs), "msg"), res.Window)
	}
	if res.Mode == "chat" && res.Ingress+res.Delivered > 0 {
		fmt.Fprintf(&b, "  (offered %.0f msgs/s, senders reached %.0f msgs/s, delivered %.0f msgs/s, fairness %.3f..%.3f)",
			res.Rate, res.IngressPerS, res.DeliveredPerS, res.FairnessMin, res.FairnessMax)
	}
	if len(res.ServerErrors) > 0 {
		fmt.Fprintf(&b, "\nserver ERR   %s", counts(res.ServerErrors))
	}
	lat := func(name string, p Percentiles) {
		if p.Count == 0 {
			fmt.Fprintf(&b, "\n%-12s none measured", name)
			return
		}
		fmt.Fprintf(&b, "\n%-12s p50 %s  p90 %s  p99 %s  p99.9 %s  max %s", name, us(p.P50), us(p.P90), us(p.P99), us(p.P999), us(p.Max))
	}
	lat("latency", res.Latency)
	if res.Mode != "closed" {
		lat("uncorrected", res.LatencyUncorrected)
	}
	res.workSummary(&b)
	res.pacingSummary(&b)
	if elapsed := time.Duration(res.Elapsed * float64(time.Second)); elapsed < minSaturationWall {
		// A ratio of two tiny numbers: a few ms of CPU over a few ms.
		fmt.Fprintf(&b, "\nclient cpu   not measured: the run lasted %v, too short to measure (under %v)", elapsed.Round(100*time.Microsecond), minSaturationWall)
	} else {
		fmt.Fprintf(&b, "\nclient cpu   %.0f%% of a core (cpus %s)", res.ClientCPUPct, res.ClientCPUs)
	}
	fmt.Fprintf(&b, "\nkernel       ListenOverflows +%d  ListenDrops +%d", res.ListenOverflows, res.ListenDrops)
	ws := slices.Clone(res.Warnings)
	sort.Strings(ws)
	for _, w := range ws {
		fmt.Fprintf(&b, "\nwarning: %s", w)
	}
	return b.String()
}

// counts formats counts by name, sorted by name: "closed 2, timeout 3".
func counts(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// us formats microseconds with a unit that fits.
func us(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fs", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.2fms", v/1e3)
	}
	return fmt.Sprintf("%.1fus", v)
}
