package report

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcplab/tcplab/benchgrid"
	"github.com/tcplab/tcplab/load"
)

// fab is a fabricated key cell: what a model measured in a workload.
type fab struct {
	model     string
	rate      float64 // msgs/s (delivered for chat, the figure for short)
	success   float64
	saturated bool
	cpuUs     float64 // server CPU per message
	rss       float64 // idle: RSS per connection
	threads   int
	round     int
}

// fabricated builds results of five workloads over models a..e. Every
// number is made up to put the verdict in one of its cases:
//   - echo: a wins by 25% on less CPU per message; c, with the largest
//     rate, served 1% of its clients and is out; d was skipped; e failed.
//   - short: a and b within the default noise: a tie.
//   - chat: a and b saturated the client: client-bound; c is server-bound.
//   - idle: lower is better; a holds connections in far less memory.
//   - none: every model under the threshold.
//   - repeated: two rounds each, so the noise is measured.
//   - cpu, blocking, greedy: the work workloads (see addWork).
func fabricated() *benchgrid.Results {
	models := []string{"a", "b", "c", "d", "e"}
	res := &benchgrid.Results{Meta: benchgrid.Meta{Command: "tcplab bench --quick", Preset: "quick", Models: models, Repeat: 1, CPUs: 2}}
	add := func(workload, app string, fs ...fab) {
		res.Meta.Workloads = append(res.Meta.Workloads, benchgrid.WorkloadInfo{Name: workload, App: app, Clients: []int{100}, Backlogs: []int{256}, Duration: 1, ConnectTimeout: 1})
		for _, f := range fs {
			served := int(100 * f.success)
			l := &load.Result{OKConns: served, FailedConns: 100 - served, SuccessRate: f.success,
				Msgs: uint64(f.rate), MsgsPerS: f.rate, Window: 1, Elapsed: 1,
				ClientSaturated: f.saturated, ClientCPUPct: map[bool]float64{true: 97, false: 40}[f.saturated]}
			switch {
			case app == "chat":
				l.Delivered, l.DeliveredPerS = uint64(f.rate), f.rate
			case workload == "short": // one message per connection
				l.OKConns, l.FailedConns = int(f.rate), int(f.rate/f.success)-int(f.rate)
			}
			res.Cells = append(res.Cells, benchgrid.Cell{Workload: workload, Model: f.model, App: app, Clients: 100, Backlog: 256, Round: f.round,
				Status: benchgrid.StatusOK, Load: l,
				Server: benchgrid.ServerCost{CPUPerMsgUs: f.cpuUs, CPUSeconds: f.cpuUs * f.rate / 1e6, RSSPerConn: f.rss, Threads: f.threads, Procs: 1}})
		}
	}
	add("echo", "echo",
		fab{model: "a", rate: 100e3, success: 1, cpuUs: 3},
		fab{model: "b", rate: 75e3, success: 1, cpuUs: 5},
		fab{model: "c", rate: 500e3, success: 0.01, cpuUs: 1},
	)
	res.Cells = append(res.Cells,
		benchgrid.Cell{Workload: "echo", Model: "d", App: "echo", Clients: 100, Backlog: 256, Status: benchgrid.StatusSkipped, Cause: "model d: not supported here"},
		benchgrid.Cell{Workload: "echo", Model: "e", App: "echo", Clients: 100, Backlog: 256, Status: benchgrid.StatusError, Cause: "server exited during the load"})
	add("short", "echo",
		fab{model: "a", rate: 10e3, success: 1, cpuUs: 40},
		fab{model: "b", rate: 9.5e3, success: 1, cpuUs: 41},
		fab{model: "c", rate: 2e3, success: 1, cpuUs: 300},
	)
	add("chat", "chat",
		fab{model: "a", rate: 1e6, success: 1, saturated: true, cpuUs: 1},
		fab{model: "b", rate: 0.8e6, success: 1, saturated: true, cpuUs: 1.2},
		fab{model: "c", rate: 0.3e6, success: 1, cpuUs: 4},
	)
	add("idle", "echo",
		fab{model: "a", rate: 100, success: 1, rss: 700, threads: 3},
		fab{model: "b", rate: 100, success: 1, rss: 9000, threads: 103},
		fab{model: "c", rate: 1, success: 0.01, rss: 10},
	)
	add("none", "echo",
		fab{model: "a", rate: 100, success: 0.5},
		fab{model: "b", rate: 100, success: 0.2},
	)
	add("repeated", "echo",
		fab{model: "a", rate: 100e3, success: 1, cpuUs: 3},
		fab{model: "a", rate: 60e3, success: 1, cpuUs: 3, round: 1},
		fab{model: "b", rate: 70e3, success: 1, cpuUs: 3},
		fab{model: "b", rate: 72e3, success: 1, cpuUs: 3, round: 1},
	)
	addWork(res)
	return res
}

// workFab is a fabricated key cell of a work workload.
type workFab struct {
	model   string
	rate    float64 // light requests/s
	success float64
	busy    float64 // server CPU, % of a core
	cpuUs   float64 // server CPU per request
	threads int
	// greedy: the light p99 and the heavy requests' p50, from send, in ms
	light99, heavy50 float64
}

// addWork adds the work workloads at 20 clients, each model's numbers made
// up to show one mechanism:
//   - cpu: a turns twice the CPU into requests at about b's cost per
//     request, and wins.
//   - blocking (sleep:5ms): a sleeps 15 requests at once, b 1.9 with its
//     CPU idle: its handlers block its threads.
//   - greedy (lower is better): a's light p99 is a tenth of a heavy
//     request, b's about one; c served 1 of 20.
func addWork(res *benchgrid.Results) {
	add := func(info benchgrid.WorkloadInfo, spec string, fs ...workFab) {
		info.App, info.Clients, info.Backlogs, info.Duration, info.ConnectTimeout = "work", []int{20}, []int{256}, 1, 1
		res.Meta.Workloads = append(res.Meta.Workloads, info)
		for _, f := range fs {
			served := int(20 * f.success)
			l := &load.Result{OKConns: served, FailedConns: 20 - served, SuccessRate: f.success,
				Msgs: uint64(f.rate), MsgsPerS: f.rate, Window: 1, Elapsed: 1, ClientCPUPct: 30,
				Work: &load.WorkSpecs{Light: spec},
				Classes: &load.Classes{
					Light: load.Class{Msgs: uint64(f.rate), MsgsPerS: f.rate, LatencyUncorrected: load.Percentiles{P99: 1e3 * f.light99}},
					Heavy: load.Class{Msgs: 20, LatencyUncorrected: load.Percentiles{P50: 1e3 * f.heavy50}},
				}}
			res.Cells = append(res.Cells, benchgrid.Cell{Workload: info.Name, Model: f.model, App: "work", Clients: 20, Backlog: 256,
				Status: benchgrid.StatusOK, Load: l,
				Server: benchgrid.ServerCost{CPUSeconds: f.busy / 100, CPUPerMsgUs: f.cpuUs, Threads: f.threads, Procs: 1}})
		}
	}
	add(benchgrid.WorkloadInfo{Name: "cpu", Work: "sha:1000", WorkCPUUs: 99.6}, "sha:1000",
		workFab{model: "a", rate: 16e3, success: 1, busy: 180, cpuUs: 112, threads: 6},
		workFab{model: "b", rate: 8e3, success: 1, busy: 90, cpuUs: 108, threads: 6},
	)
	add(benchgrid.WorkloadInfo{Name: "blocking", Work: "sleep:5ms"}, "sleep:5ms",
		workFab{model: "a", rate: 3000, success: 1, busy: 12, cpuUs: 40, threads: 9},
		workFab{model: "b", rate: 380, success: 1, busy: 2, cpuUs: 50, threads: 6},
	)
	add(benchgrid.WorkloadInfo{Name: "greedy", Work: "echo", HeavyWork: "sha:200000", HeavyShare: 0.05, HeavyCPUUs: 19996}, "echo",
		workFab{model: "a", rate: 475, success: 1, busy: 60, cpuUs: 900, threads: 7, light99: 2, heavy50: 21},
		workFab{model: "b", rate: 475, success: 1, busy: 55, cpuUs: 1000, threads: 6, light99: 20, heavy50: 21},
		workFab{model: "c", rate: 25, success: 0.05, light99: 0.3, heavy50: 21},
	)
}

func verdictOf(t *testing.T, vs []Verdict, workload string) Verdict {
	t.Helper()
	for _, v := range vs {
		if v.Workload == workload {
			return v
		}
	}
	t.Fatalf("no verdict for %s", workload)
	return Verdict{}
}

// TestBestIsTheBestOfItsValues checks, in every row, that best is the
// best of values by better, and that no model out of the ranking is in
// values.
func TestBestIsTheBestOfItsValues(t *testing.T) {
	res := fabricated()
	// A workload the run never reached (interrupted before it).
	res.Meta.Workloads = append(res.Meta.Workloads, benchgrid.WorkloadInfo{Name: "later", App: "echo", Clients: []int{1}, Backlogs: []int{1}})
	vs := Verdicts(res)
	if later := vs[len(vs)-1]; later.Call != CallNone || later.Why != "On later, no cell ran (the run stopped before it)." {
		t.Errorf("a workload that did not run: %+v", later)
	}
	if len(vs) != 10 {
		t.Fatalf("%d verdicts, want one per workload", len(vs))
	}
	for _, v := range vs {
		if len(v.Values) == 0 {
			if v.Best != "" || v.Call != CallNone {
				t.Errorf("%s: best %q, call %s with no values", v.Workload, v.Best, v.Call)
			}
			continue
		}
		for m, x := range v.Values {
			if _, out := v.Out[m]; out {
				t.Errorf("%s: %s is both ranked and out", v.Workload, m)
			}
			if b := v.Values[v.Best]; v.Better == Higher && x > b || v.Better == Lower && x < b {
				t.Errorf("%s: best %s (%v) but %s has %v, and %s is better", v.Workload, v.Best, b, m, x, v.Better)
			}
		}
		if _, ok := v.Values[v.Best]; !ok {
			t.Errorf("%s: best %q is not among the values %v", v.Workload, v.Best, v.Values)
		}
	}
}

func TestVerdictCases(t *testing.T) {
	vs := Verdicts(fabricated())

	echo := verdictOf(t, vs, "echo")
	if echo.Best != "a" || echo.Call != CallWinner || echo.Better != Higher || echo.Unit != "msgs/s" || len(echo.Values) != 2 {
		t.Errorf("echo: best %s, call %s, values %v", echo.Best, echo.Call, echo.Values)
	}
	if !strings.Contains(echo.Out["c"], "served 1 of 100 clients, 1.0%, under the 90% threshold") ||
		!strings.Contains(echo.Out["e"], "server exited") || echo.Out["d"] == "" {
		t.Errorf("echo: out %v", echo.Out)
	}
	for _, want := range []string{"On echo, a is best with 100k msgs/s; b is next with 75.0k msgs/s",
		"because a spends less server CPU per message (3.00 µs against 5.00 µs)", "Out of the ranking: under the 90% success threshold, c 1/100 (clients served); d: skipped: model d: not supported here; e: error: server exited"} {
		if !strings.Contains(echo.Why, want) {
			t.Errorf("echo: %q lacks %q", echo.Why, want)
		}
	}

	short := verdictOf(t, vs, "short")
	if short.Call != CallTie || short.Best != "a" || strings.Join(short.Tied, ",") != "a,b" {
		t.Errorf("short: call %s, best %s, tied %v; want a tie of a and b", short.Call, short.Best, short.Tied)
	}
	for _, want := range []string{"a and b are within the run-to-run noise (±15%)", "9.50k conns/s to 10.0k conns/s", "a tie on this machine", "next is c at 2.00k conns/s"} {
		if !strings.Contains(short.Why, want) {
			t.Errorf("short: %q lacks %q", short.Why, want)
		}
	}

	chat := verdictOf(t, vs, "chat")
	if chat.Call != CallClientBound || chat.Best != "a" || strings.Join(chat.Tied, ",") != "a,b" {
		t.Errorf("chat: call %s, best %s, tied %v; want client-bound a and b", chat.Call, chat.Best, chat.Tied)
	}
	for _, want := range []string{"a and b saturated the load generator (97% of a core)", "client-bound, a tie on this machine",
		"of them a spent the least server CPU per delivery (1.00 µs) and b the most (1.20 µs)",
		"the best server-bound model is c at 300k msgs/s"} {
		if !strings.Contains(chat.Why, want) {
			t.Errorf("chat: %q lacks %q", chat.Why, want)
		}
	}
	if strings.Contains(chat.Why, "is best") {
		t.Errorf("chat: %q crowns a model of a client-bound row", chat.Why)
	}

	idle := verdictOf(t, vs, "idle")
	if idle.Best != "a" || idle.Call != CallWinner || idle.Better != Lower || idle.Unit != "bytes" {
		t.Errorf("idle: best %s, call %s, better %s", idle.Best, idle.Call, idle.Better)
	}
	for _, want := range []string{"a is best with 700 B", "b is next with 8.79 KiB", "because a holds them on 3 threads in 1 process, b on 103 threads in 1 process"} {
		if !strings.Contains(idle.Why, want) {
			t.Errorf("idle: %q lacks %q", idle.Why, want)
		}
	}

	none := verdictOf(t, vs, "none")
	if none.Call != CallNone || none.Best != "" || len(none.Out) != 2 || none.Why != "On none, no model was ranked: under the 90% success threshold, a 50/100 and b 20/100 (clients served)." {
		t.Errorf("none: call %s, best %q, out %v, why %q", none.Call, none.Best, none.Out, none.Why)
	}

	// Two rounds: the figure is the median round's (the higher of two),
	// and the noise is the widest spread: a's (100k-60k)/100k = 40%.
	rep := verdictOf(t, vs, "repeated")
	if rep.Values["a"] != 100e3 || rep.Values["b"] != 72e3 || rep.Noise != 0.4 || !strings.HasPrefix(rep.NoiseFrom, "measured") {
		t.Errorf("repeated: values %v, noise %v (%s)", rep.Values, rep.Noise, rep.NoiseFrom)
	}
	if rep.Call != CallTie {
		t.Errorf("repeated: call %s; 100k and 72k are within a measured 40%% noise", rep.Call)
	}
	if !strings.HasPrefix(echo.NoiseFrom, "the documented default") {
		t.Errorf("echo: noise from %q, want the documented default for one round", echo.NoiseFrom)
	}
}

// TestMatrixMarksTheBest checks the matrix's cells, marks and terminal
// form.
func TestMatrixMarksTheBest(t *testing.T) {
	res := fabricated()
	vs := Verdicts(res)
	rows := Matrix(res, vs)
	if len(rows) != len(vs) {
		t.Fatalf("%d rows for %d verdicts", len(rows), len(vs))
	}
	want := map[string][]string{ // workload -> class of a..e
		"echo":     {classBest, classRanked, classOut, classSkipped, classOut},
		"short":    {classTied, classTied, classRanked, classNone, classNone},
		"chat":     {classTied, classTied, classRanked, classNone, classNone},
		"idle":     {classBest, classRanked, classOut, classNone, classNone},
		"none":     {classOut, classOut, classNone, classNone, classNone},
		"cpu":      {classBest, classRanked, classNone, classNone, classNone},
		"blocking": {classBest, classRanked, classNone, classNone, classNone},
		"greedy":   {classBest, classRanked, classOut, classNone, classNone},
	}
	for _, r := range rows {
		classes, ok := want[r.Verdict.Workload]
		if !ok {
			continue
		}
		for i, c := range r.Cells {
			if c.Class != classes[i] {
				t.Errorf("%s, model %s: class %s, want %s (%+v)", r.Verdict.Workload, res.Meta.Models[i], c.Class, classes[i], c)
			}
			wantMark := map[string]string{classBest: MarkBest, classTied: MarkTied}[c.Class]
			if c.Mark != wantMark {
				t.Errorf("%s, model %s: mark %q, want %q", r.Verdict.Workload, res.Meta.Models[i], c.Mark, wantMark)
			}
		}
	}
	echo := rows[0].Cells
	if echo[0].Text != "100k msgs/s" || echo[0].Note != "server CPU 3.00 µs/msg" || echo[2].Text != "out" ||
		!strings.Contains(echo[2].Note, "under the 90% threshold") || echo[3].Note != "model d: not supported here" {
		t.Errorf("echo cells %+v", echo)
	}

	var b bytes.Buffer
	WriteMatrix(&b, res, vs)
	lines := strings.Split(b.String(), "\n")
	if !strings.HasPrefix(lines[0], "workload") || !strings.Contains(lines[0], "key figure") ||
		!strings.Contains(lines[1], "echo") || !strings.Contains(lines[1], MarkBest+" 100k msgs/s") ||
		!strings.Contains(lines[3], MarkTied+" 1.00M msgs/s"+MarkClient) || !strings.Contains(b.String(), "- On chat, a and b saturated") {
		t.Errorf("terminal matrix:\n%s", b.String())
	}
}

// TestVerdictInJSONAndPages writes the fabricated report: results.json
// carries the verdict, and summary.md and index.html open with it.
func TestVerdictInJSONAndPages(t *testing.T) {
	dir := t.TempDir()
	if _, err := Write(dir, fabricated()); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Verdict []map[string]any `json:"verdict"`
	}
	b, _ := os.ReadFile(filepath.Join(dir, JSONFile))
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Verdict) != 9 {
		t.Fatalf("%d verdict rows in results.json", len(doc.Verdict))
	}
	for _, k := range []string{"workload", "figure", "unit", "better", "values", "best", "why"} {
		if _, ok := doc.Verdict[0][k]; !ok {
			t.Errorf("results.json verdict lacks %q: %v", k, doc.Verdict[0])
		}
	}
	md, _ := os.ReadFile(filepath.Join(dir, SummaryFile))
	if !strings.Contains(string(md), "| `echo` | msgs/s at 100 clients, backlog 256 | **"+MarkBest+" 100k msgs/s** |") {
		t.Errorf("summary.md:\n%s", md)
	}
	html, _ := os.ReadFile(filepath.Join(dir, HTMLFile))
	verdict, cells := strings.Index(string(html), "Verdict"), strings.Index(string(html), "Workload echo")
	if verdict < 0 || cells < 0 || verdict > cells || !strings.Contains(string(html), `<td class="best"`) {
		t.Errorf("index.html does not open with the verdict (at %d, cells at %d)", verdict, cells)
	}
}

// TestVerdictOfTheWorkWorkloads checks the work workloads' figures (greedy's
// lower is better) and that each sentence names the mechanism its
// counters show.
func TestVerdictOfTheWorkWorkloads(t *testing.T) {
	vs := Verdicts(fabricated())
	for _, x := range []struct {
		workload, unit, better string
		values                 map[string]float64
		why                    []string
	}{
		{"cpu", "req/s", Higher, map[string]float64{"a": 16e3, "b": 8e3}, []string{
			"On cpu, a is best with 16.0k req/s; b is next with 8.00k req/s",
			"because a turned more CPU into requests (the server at 180% of a core against 90%) at about the same CPU per request (112 µs against 108 µs)",
			"Each request was sha:1000, about 100 µs of CPU as sized when the run started; the servers spent 108 µs (b) to 112 µs (a) of CPU per request.",
		}},
		{"blocking", "req/s", Higher, map[string]float64{"a": 3000, "b": 380}, []string{
			"On blocking, a is best with 3.00k req/s; b is next with 380 req/s.",
			"requests/s × 5 ms is how many slept at once: of 20 clients' requests, 15.0 on a (9 threads), 1.9 on b (6 threads)",
			"its CPU nearly idle (2% of a core): b's handlers block the threads that run them",
		}},
		{"greedy", "ms", Lower, map[string]float64{"a": 2, "b": 20}, []string{
			"On greedy, a is best with 2.00 ms; b is next with 20.0 ms.",
			"under the 90% success threshold, c 1/20",
			"A heavy request was sha:200000, about 20.0 ms of CPU as sized when the run started, and took 21.0 ms on b",
			"On b the light p99 is 0.95 times that: light requests waited behind heavy ones, as they do where a heavy request holds the thread they share",
			"on a it is 0.095 times a heavy request (21.0 ms): its light requests ran beside the heavy ones",
		}},
	} {
		v := verdictOf(t, vs, x.workload)
		if v.Best != "a" || v.Call != CallWinner || v.Unit != x.unit || v.Better != x.better || !maps.Equal(v.Values, x.values) {
			t.Errorf("%s: best %s, call %s, unit %s, better %s, values %v", x.workload, v.Best, v.Call, v.Unit, v.Better, v.Values)
		}
		for _, want := range x.why {
			if !strings.Contains(v.Why, want) {
				t.Errorf("%s: %q lacks %q", x.workload, v.Why, want)
			}
		}
	}
	greedy := verdictOf(t, vs, "greedy")
	if greedy.Beside["b"] != "heavy p50 21.0 ms, server CPU 55%" {
		t.Errorf("greedy beside: %v", greedy.Beside)
	}
	cpu := verdictOf(t, vs, "cpu")
	if cpu.Beside["a"] != "server CPU 112 µs/req" {
		t.Errorf("cpu beside: %v", cpu.Beside)
	}
}

// TestGreedySaysWhenTheMachineNotTheModelHeldLightRequests: where even the
// best model's light p99 is about a heavy request, every model's light
// requests waited (for a CPU: the machine was busy), and the sentence does
// not blame a shared thread; nor where the worst is not well behind the
// best. Where it is, light requests waited behind heavy ones, even behind
// several.
func TestGreedySaysWhenTheMachineNotTheModelHeldLightRequests(t *testing.T) {
	w := benchgrid.WorkloadInfo{Name: "greedy", HeavyWork: "sha:200000", HeavyCPUUs: 20e3}
	cell := func(light99, heavy50 float64) benchgrid.Cell {
		return benchgrid.Cell{Load: &load.Result{Classes: &load.Classes{
			Light: load.Class{Msgs: 100, LatencyUncorrected: load.Percentiles{P99: 1e3 * light99}},
			Heavy: load.Class{Msgs: 5, LatencyUncorrected: load.Percentiles{P50: 1e3 * heavy50}},
		}}}
	}
	busy := greedyExplain(w, []ranked{{"a", 40, cell(40, 45)}, {"b", 90, cell(90, 60)}})
	if !strings.Contains(busy, "Even on a the light p99 is 0.89 times a heavy request (45.0 ms)") ||
		!strings.Contains(busy, "the machine's other load, not only the model") || strings.Contains(busy, "holds the thread") {
		t.Errorf("busy machine: %q", busy)
	}
	close := greedyExplain(w, []ranked{{"a", 8, cell(8, 21)}, {"b", 12, cell(12, 21)}})
	if strings.Contains(close, "holds the thread") || !strings.Contains(close, "the light p99 is 0.57 times a heavy request on b, and 0.38 times on a") {
		t.Errorf("models within 2x: %q", close)
	}
	queued := greedyExplain(w, []ranked{{"a", 3, cell(3, 30)}, {"b", 100, cell(100, 29)}})
	if !strings.Contains(queued, "On b the light p99 is 3.4 times that: light requests waited behind heavy ones") ||
		!strings.Contains(queued, "on a it is 0.1 times a heavy request (30.0 ms): its light requests ran beside the heavy ones") {
		t.Errorf("light requests behind several heavy ones: %q", queued)
	}
}
