package report

import (
	"bytes"
	"encoding/json"
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
	return res
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
	if len(vs) != 7 {
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
		"echo":  {classBest, classRanked, classOut, classSkipped, classOut},
		"short": {classTied, classTied, classRanked, classNone, classNone},
		"chat":  {classTied, classTied, classRanked, classNone, classNone},
		"idle":  {classBest, classRanked, classOut, classNone, classNone},
		"none":  {classOut, classOut, classNone, classNone, classNone},
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
	if len(doc.Verdict) != 6 {
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
