package report

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/tcplab/tcplab/benchgrid"
	"github.com/tcplab/tcplab/load"
)

// The key figures of the work workloads (cpu, blocking, greedy: package
// app/work serves them), and the mechanisms their counters show.

// cpuFigure is cpu's: requests/s, each request costing about the same CPU.
// What sets the rate is how much CPU the server turns into requests (its
// CPU use) and what each request costs it, and both are counted.
func cpuFigure(beside func(benchgrid.Cell) string) figure {
	return figure{name: "requests/s", unit: "req/s", better: Higher, per: "request", clientBound: true,
		value: lightRate, beside: beside, mechanism: cpuMechanism, explain: cpuExplain}
}

// blockingFigure is blocking's: requests/s, each request sleeping in its
// handler. Requests/s times the sleep is how many slept at once (Little's
// law): a model whose handlers block the threads that run them can sleep
// no more requests at once than it has such threads.
func blockingFigure(beside func(benchgrid.Cell) string) figure {
	return figure{name: "requests/s", unit: "req/s", better: Higher, per: "request", clientBound: true,
		value: lightRate, beside: beside, mechanism: noMechanism, explain: blockingExplain}
}

// greedyFigure is greedy's: the light clients' p99 from each request's
// send (not from its due time, which adds the load generator's own
// lateness, the same for every model), in milliseconds. A light request
// that shares a thread with a heavy one waits for it; the light p99
// against a heavy request's latency says whether they did.
func greedyFigure() figure {
	return figure{name: "light clients' p99", unit: "ms", better: Lower, per: "request",
		value: func(c benchgrid.Cell) (float64, bool) {
			l := light(c)
			if l == nil || l.Msgs == 0 {
				return 0, false
			}
			return l.LatencyUncorrected.P99 / 1e3, true
		},
		beside: func(c benchgrid.Cell) string {
			return fmt.Sprintf("heavy p50 %s, server CPU %.0f%%", formatUs(heavyP50(c)), busy(c))
		},
		mechanism: noMechanism, explain: greedyExplain}
}

// noMechanism leaves the winner's clause to the figure's explain, which
// compares the best model with the worst: what the workload is about.
func noMechanism(_, _ ranked) string { return "" }

// light returns a work cell's light class, or nil.
func light(c benchgrid.Cell) *load.Class {
	if c.Load == nil || c.Load.Classes == nil {
		return nil
	}
	return &c.Load.Classes.Light
}

// lightRate is the light requests' rate: the work requests, without the
// echo that proves each connection.
func lightRate(c benchgrid.Cell) (float64, bool) {
	l := light(c)
	if l == nil {
		return 0, false
	}
	return l.MsgsPerS, l.Msgs > 0
}

func cpuMechanism(a, b ranked) string {
	ab, bb := busy(a.cell), busy(b.cell)
	ac, bc := a.cell.Server.CPUPerMsgUs, b.cell.Server.CPUPerMsgUs
	if ab <= 0 || bb <= 0 || ac <= 0 || bc <= 0 {
		return "and the server counters have nothing to compare"
	}
	per := fmt.Sprintf("CPU per request (%s against %s)", formatUs(ac), formatUs(bc))
	switch {
	case relDiff(ab, bb) < DefaultNoise && relDiff(ac, bc) < DefaultNoise:
		return fmt.Sprintf("and both kept the server about as busy (%.0f%% and %.0f%% of a core) at about the same %s: within the noise", ab, bb, per)
	case relDiff(ab, bb) < DefaultNoise:
		return fmt.Sprintf("because at about the same CPU use (%.0f%% and %.0f%% of a core) %s spent less %s", ab, bb, a.model, per)
	}
	use := fmt.Sprintf("because %s turned more CPU into requests (the server at %.0f%% of a core against %.0f%%)", a.model, ab, bb)
	switch {
	case relDiff(ac, bc) < DefaultNoise:
		return use + " at about the same " + per
	case ac < bc:
		return use + " and spent less " + per
	}
	return use + ", though it spent more " + per
}

func cpuExplain(w benchgrid.WorkloadInfo, ranks []ranked) string {
	if len(ranks) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Each request was %s", w.Work)
	if w.WorkCPUUs > 0 {
		fmt.Fprintf(&b, ", about %s of CPU as sized when the run started", formatUs(math.Round(w.WorkCPUUs)))
	}
	lo, hi := ranks[0], ranks[0]
	for _, r := range ranks {
		if r.cell.Server.CPUPerMsgUs < lo.cell.Server.CPUPerMsgUs {
			lo = r
		}
		if r.cell.Server.CPUPerMsgUs > hi.cell.Server.CPUPerMsgUs {
			hi = r
		}
	}
	if lo.model == hi.model {
		fmt.Fprintf(&b, "; %s spent %s of server CPU per request.", lo.model, formatUs(lo.cell.Server.CPUPerMsgUs))
	} else {
		fmt.Fprintf(&b, "; the servers spent %s (%s) to %s (%s) of CPU per request.",
			formatUs(lo.cell.Server.CPUPerMsgUs), lo.model, formatUs(hi.cell.Server.CPUPerMsgUs), hi.model)
	}
	return b.String()
}

// sleepOf is how long a blocking cell's requests slept, or 0.
func sleepOf(c benchgrid.Cell) time.Duration {
	if c.Load == nil || c.Load.Work == nil {
		return 0
	}
	spec, err := load.ParseWorkSpec(c.Load.Work.Light)
	if err != nil || spec.Kind != load.WorkSleep {
		return 0
	}
	return spec.Sleep
}

// asleep is how many requests slept at once on average in a blocking
// cell: its rate times the sleep (Little's law).
func asleep(r ranked) float64 { return r.value * sleepOf(r.cell).Seconds() }

func blockingExplain(_ benchgrid.WorkloadInfo, ranks []ranked) string {
	if len(ranks) == 0 || sleepOf(ranks[0].cell) == 0 {
		return ""
	}
	best, worst := ranks[0], ranks[len(ranks)-1]
	d := durationText(sleepOf(best.cell))
	at := func(r ranked) string {
		return fmt.Sprintf("%.1f on %s (%s)", asleep(r), r.model, count(r.cell.Server.Threads, "thread"))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Each request blocks its handler for %s, so requests/s × %s is how many slept at once: of %d clients' requests, %s", d, d, best.cell.Clients, at(best))
	if worst.model == best.model {
		b.WriteString(".")
		return b.String()
	}
	fmt.Fprintf(&b, ", %s", at(worst))
	if asleep(worst) < float64(worst.cell.Clients)/2 && busy(worst.cell) < 50 {
		fmt.Fprintf(&b, ", with %d clients waiting and its CPU nearly idle (%.0f%% of a core): %s's handlers block the threads that run them, "+
			"so no more requests sleep at once than it has such threads", worst.cell.Clients, busy(worst.cell), worst.model)
	}
	b.WriteString(".")
	return b.String()
}

// heavyP50 is a greedy cell's heavy requests' p50 from send, in µs.
func heavyP50(c benchgrid.Cell) float64 {
	if c.Load == nil || c.Load.Classes == nil {
		return 0
	}
	return c.Load.Classes.Heavy.LatencyUncorrected.P50
}

// held is a greedy cell's light p99 over its heavy requests' p50: about 1
// or more when a light request waited for whole heavy ones, near 0 when
// light requests ran beside them.
func held(r ranked) float64 {
	if h := heavyP50(r.cell); h > 0 {
		return 1e3 * r.value / h
	}
	return 0
}

func greedyExplain(w benchgrid.WorkloadInfo, ranks []ranked) string {
	if len(ranks) == 0 || heavyP50(ranks[0].cell) == 0 {
		return ""
	}
	best, worst := ranks[0], ranks[len(ranks)-1]
	var b strings.Builder
	fmt.Fprintf(&b, "A heavy request was %s", w.HeavyWork)
	if w.HeavyCPUUs > 0 {
		fmt.Fprintf(&b, ", about %s of CPU as sized when the run started", formatUs(math.Round(w.HeavyCPUUs)))
	}
	fmt.Fprintf(&b, ", and took %s on %s (p50 from send)", formatUs(heavyP50(worst.cell)), worst.model)
	switch {
	case worst.model != best.model && held(worst) >= 0.5 && held(best) < 0.5 && worst.value >= 2*best.value:
		fmt.Fprintf(&b, ". On %s the light p99 is %.2g times that: light requests waited behind heavy ones, as they do where "+
			"a heavy request holds the thread they share; on %s it is %.2g times a heavy request (%s): %s",
			worst.model, held(worst), best.model, held(best), formatUs(heavyP50(best.cell)), besideWhy(best))
	case held(best) >= 0.5:
		fmt.Fprintf(&b, ". Even on %s the light p99 is %.2g times a heavy request (%s): light requests waited about as long "+
			"as a heavy one on every model, so the machine's other load, not only the model, set these figures", best.model, held(best), formatUs(heavyP50(best.cell)))
	default:
		fmt.Fprintf(&b, "; the light p99 is %.2g times a heavy request on %s, and %.2g times on %s (%s)",
			held(worst), worst.model, held(best), best.model, formatUs(heavyP50(best.cell)))
	}
	b.WriteString(".")
	return b.String()
}

// besideWhy says what a light p99 under half a heavy request shows.
func besideWhy(r ranked) string {
	if held(r) < 0.25 {
		return "its light requests ran beside the heavy ones"
	}
	return "its light requests waited for part of a heavy one at most"
}

// durationText formats a duration as the report does: "5 ms", "250 µs".
func durationText(d time.Duration) string {
	if d >= time.Millisecond {
		return fmt.Sprintf("%g ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%g µs", float64(d)/float64(time.Microsecond))
}

// requestsText says what a work workload's clients sent, the sha requests
// with the CPU time they were sized for; "" for other apps.
func requestsText(w benchgrid.WorkloadInfo) string {
	if w.Work == "" {
		return ""
	}
	spec := func(s string, us float64) string {
		if us > 0 {
			return fmt.Sprintf("%s (about %s of CPU here)", s, formatUs(math.Round(us)))
		}
		return s
	}
	if w.HeavyWork == "" {
		return "Every request: " + spec(w.Work, w.WorkCPUUs)
	}
	return fmt.Sprintf("Light requests: %s; heavy ones, from %.0f%% of the clients (at least one): %s",
		spec(w.Work, w.WorkCPUUs), 100*w.HeavyShare, spec(w.HeavyWork, w.HeavyCPUUs))
}
