package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tcplab/tcplab/benchgrid"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/cpupin"
	"github.com/tcplab/tcplab/internal/netstat"
	"github.com/tcplab/tcplab/report"
)

// unsupportedModel stands for a model this machine cannot run (as uring is
// where the kernel refuses io_uring). It exists only in this test binary,
// which is also the tcplab binary bench starts (TCPLAB_TEST_MAIN).
const unsupportedModel = "test-unsupported"

func init() {
	engine.Register(engine.Model{
		Name: unsupportedModel, Summary: "a model that refuses to start (tests only)", Limits: "none",
		New: func(handler.Handler, engine.Config) (engine.Server, error) {
			return nil, fmt.Errorf("%w: this test kernel refuses it", engine.ErrUnsupported)
		},
	})
}

func TestLoadJSONLastLineHasTheFields(t *testing.T) {
	addr := serve(t, "--addr", "127.0.0.1:0").Addr
	code, out, stderr := runCmd(t, "load", "--addr", addr, "--conns", "3", "--duration", "200ms", "--json")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q: want 0 and no progress off a terminal", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &got); err != nil {
		t.Fatalf("last line %q: %v", lines[len(lines)-1], err)
	}
	for _, k := range []string{"ok_conns", "failed_conns", "msgs_per_s", "bytes_per_s", "client_cpu_pct"} {
		if _, ok := got[k].(float64); !ok {
			t.Errorf("%s: %v, want a number", k, got[k])
		}
	}
	if _, ok := got["client_saturated"].(bool); !ok {
		t.Errorf("client_saturated: %v, want a boolean", got["client_saturated"])
	}
	lat, _ := got["latency_us"].(map[string]any)
	for _, k := range []string{"p50", "p90", "p99", "p999", "max"} {
		if v, ok := lat[k].(float64); !ok || v <= 0 {
			t.Errorf("latency_us.%s: %v, want a positive number", k, lat[k])
		}
	}
	if got["ok_conns"] != 3.0 || got["failed_conns"] != 0.0 || got["msgs_per_s"].(float64) <= 0 {
		t.Errorf("ok %v failed %v msgs/s %v", got["ok_conns"], got["failed_conns"], got["msgs_per_s"])
	}
}

func TestLoadWithoutServerExits1AfterItsResult(t *testing.T) {
	s := serve(t, "--addr", "127.0.0.1:0")
	stop(t, s) // nothing listens there now
	addr := s.Addr
	code, out, stderr := runCmd(t, "load", "--addr", addr, "--conns", "2", "--duration", "100ms")
	if code != 1 || !strings.Contains(out, "failed 2") || !strings.Contains(stderr, "no connection succeeded") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, stderr)
	}
}

func TestDoctorPrintsEachLimitWithWhatItCaps(t *testing.T) {
	code, out, _ := runCmd(t, "doctor")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	names := []string{"nofile soft", "nofile hard", "net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog",
		"net.ipv4.tcp_syncookies", "net.ipv4.ip_local_port_range"}
	if len(lines) != len(names) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(names), out)
	}
	for i, name := range names {
		rest, ok := strings.CutPrefix(lines[i], name)
		if !ok || len(strings.Fields(rest)) < 4 {
			t.Errorf("line %q: want %q, its value and what it caps", lines[i], name)
		}
	}
	somax, err := netstat.Sysctl("net.core.somaxconn")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("backlog > %s is silently cut to %s", somax, somax); !strings.Contains(lines[2], want) {
		t.Errorf("somaxconn line %q lacks %q", lines[2], want)
	}
	ports, err := netstat.LocalPortRange()
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%d ephemeral ports", ports.Size()); !strings.Contains(lines[5], want) {
		t.Errorf("port range line %q lacks %q", lines[5], want)
	}
}

func TestBareBenchIsTheQuickGridOverEveryModel(t *testing.T) {
	var names []string
	for _, m := range engine.Models() {
		names = append(names, m.Name)
	}
	echo, err := benchgrid.NamedWorkload("echo", benchgrid.Quick)
	if err != nil {
		t.Fatal(err)
	}
	// Flags that are not a grid axis keep the quick preset.
	for _, args := range [][]string{{}, {"--quick"}, {"--out", t.TempDir()}, {"--pin", "0:0"}, {"--duration", "2s"}, {"--models", "all"}, {"--repeat", "2"}} {
		opts, err := optionsFor(args...)
		if err != nil {
			t.Fatal(err)
		}
		var ws []string
		for _, w := range opts.Workloads {
			ws = append(ws, w.Name)
		}
		if opts.Preset != "quick" || !slices.Equal(opts.Models, names) || !slices.Equal(ws, benchgrid.WorkloadNames()) {
			t.Errorf("bench %q: preset %s, models %v, workloads %v; want quick over %v and every workload", args, opts.Preset, opts.Models, ws, names)
		}
		w := opts.Workloads[0]
		if !slices.Equal(w.Clients, echo.Clients) || !slices.Equal(w.Backlogs, echo.Backlogs) {
			t.Errorf("bench %q: echo grid %v x %v, want %v x %v", args, w.Clients, w.Backlogs, echo.Clients, echo.Backlogs)
		}
	}
	// A grid axis leaves it, and says so.
	opts, err := optionsFor("--workload", "echo", "--clients", "5")
	if err != nil {
		t.Fatal(err)
	}
	if opts.Preset != "custom grid (quick settings)" || !slices.Equal(opts.Workloads[0].Clients, []int{5}) || !slices.Equal(opts.Workloads[0].Backlogs, echo.Backlogs) {
		t.Errorf("--clients 5: preset %q, grid %v x %v", opts.Preset, opts.Workloads[0].Clients, opts.Workloads[0].Backlogs)
	}
	full, err := optionsFor("--full")
	if err != nil {
		t.Fatal(err)
	}
	if full.Preset != "full" || len(full.Plan()) < 5*len(opts.Models) {
		t.Errorf("--full: preset %s, %d cells", full.Preset, len(full.Plan()))
	}
	opts, err = optionsFor("--seed-grid", "--models", "goroutine")
	if err != nil {
		t.Fatal(err)
	}
	w := opts.Workloads[0]
	if len(opts.Workloads) != 1 || w.App != "chat" || len(opts.Plan()) != 100 || opts.Preset != "seed" ||
		!slices.Equal(w.Backlogs, benchgrid.SeedBacklogs()) || !slices.Equal(w.Clients, benchgrid.SeedClients()) {
		t.Errorf("seed grid: app %s, %d cells, preset %s", w.App, len(opts.Plan()), opts.Preset)
	}
}

// optionsFor parses a bench command line into its grid without running it.
func optionsFor(args ...string) (benchgrid.Options, error) {
	o := &benchOptions{}
	cmd := newBenchCmdWith(o)
	if err := cmd.ParseFlags(args); err != nil {
		return benchgrid.Options{}, err
	}
	return o.options(cmd)
}

// TestBenchWritesTheReportAndSkipsWhatCannotRun runs a small real grid: two
// models that serve and one that cannot start. The servers are separate
// processes of this binary.
func TestBenchWritesTheReportAndSkipsWhatCannotRun(t *testing.T) {
	t.Setenv("TCPLAB_TEST_MAIN", "1")
	out := t.TempDir()
	code, stdout, stderr := runCmd(t, "bench", "--workload", "echo", "--models", "goroutine,seq,"+unsupportedModel,
		"--clients", "3", "--backlog", "8", "--duration", "600ms", "--connect-timeout", "300ms", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	if err := report.Offline(out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bench: custom grid (quick settings): 3 cells", "[1/3] echo goroutine clients=3 backlog=8: success", "[3/3] echo " + unsupportedModel + " clients=3 backlog=8: skipped"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("progress lacks %q:\n%s", want, stderr)
		}
	}
	res := readResults(t, out)
	if len(res.Cells) != 3 {
		t.Fatalf("%d cells", len(res.Cells))
	}
	for _, c := range res.Cells[:2] {
		if c.Status != benchgrid.StatusOK || c.Load == nil {
			t.Fatalf("%s: %s %s", c.Model, c.Status, c.Cause)
		}
		if c.Load.OKConns < 1 || c.Load.Msgs == 0 || c.Server.CPUSeconds <= 0 || c.Server.CPUPerMsgUs <= 0 ||
			c.Server.PeakRSS == 0 || c.Server.Threads < 1 || c.Server.Procs != 1 {
			t.Errorf("%s: load %+v server %+v", c.Model, c.Load, c.Server)
		}
	}
	// seq serves one connection at a time, for the whole run; its other
	// two wait out the connect timeout in the backlog.
	if seq := res.Cells[1].Load; seq.OKConns != 1 || seq.FailedConns != 2 {
		t.Errorf("seq: ok %d failed %d, want 1 and 2", seq.OKConns, seq.FailedConns)
	}
	skip := res.Cells[2]
	if skip.Status != benchgrid.StatusSkipped || !strings.Contains(skip.Cause, "this test kernel refuses it") {
		t.Errorf("unsupported model: %s %q", skip.Status, skip.Cause)
	}
	// It ends with the verdict matrix: seq served 1 of 3, under the
	// threshold, so goroutine is the only model ranked.
	matrix := stdout[strings.Index(stdout, "workload  key figure"):]
	if !strings.Contains(matrix, "- On echo, goroutine is best with") || !strings.Contains(matrix, "under the 90% success threshold, seq 1/3") {
		t.Errorf("bench does not end with the verdict:\n%s", stdout)
	}
	html, _ := os.ReadFile(filepath.Join(out, report.HTMLFile))
	if !strings.Contains(string(html), unsupportedModel) || !strings.Contains(stdout, "skipped "+unsupportedModel) {
		t.Errorf("the skipped model is not reported:\n%s", stdout)
	}
	for _, f := range []string{report.CSVFile, report.SummaryFile, "echo-cpu-per-msg.svg", "echo-cpu-per-msg.png"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
}

// TestBenchRunsTheWorkWorkloads runs cpu, blocking and greedy on two models
// at a tiny size: the work servers answer the readiness round trip, the
// sha requests are sized here, greedy's 4 clients hold one heavy one,
// blocking has its reactor+offload column, and each row of the verdict has
// its figure.
func TestBenchRunsTheWorkWorkloads(t *testing.T) {
	t.Setenv("TCPLAB_TEST_MAIN", "1")
	out := t.TempDir()
	code, stdout, stderr := runCmd(t, "bench", "--workload", "cpu,blocking,greedy", "--models", "goroutine,reactor",
		"--clients", "4", "--backlog", "8", "--duration", "400ms", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	res := readResults(t, out)
	// 2 models on each workload, and blocking's reactor+offload.
	if len(res.Cells) != 7 || res.Meta.ShaRoundNs <= 0 {
		t.Fatalf("%d cells, a sha round %v ns", len(res.Cells), res.Meta.ShaRoundNs)
	}
	offloaded := 0
	for _, c := range res.Cells {
		if c.Model == "reactor+offload" {
			offloaded++
			if c.Workload != "blocking" {
				t.Errorf("reactor+offload ran %s", c.Workload)
			}
		}
		if c.Status != benchgrid.StatusOK || c.Load.OKConns != 4 || c.Load.Work == nil || c.Load.Classes.Light.Msgs == 0 {
			t.Fatalf("%s %s: %s %q, load %+v", c.Workload, c.Model, c.Status, c.Cause, c.Load)
		}
		want := map[string]string{"cpu": res.Meta.Workload("cpu").Work, "blocking": "sleep:5ms", "greedy": "echo"}[c.Workload]
		if c.Load.Work.Light != want || c.Workload == "greedy" && (c.Load.Work.HeavyConns != 1 || c.Load.Classes.Heavy.Msgs == 0) {
			t.Errorf("%s %s: work %+v, want light %s (and one heavy client on greedy)", c.Workload, c.Model, c.Load.Work, want)
		}
	}
	if offloaded != 1 {
		t.Errorf("%d reactor+offload cells, want 1 (on blocking)", offloaded)
	}
	cpu, greedy := res.Meta.Workload("cpu"), res.Meta.Workload("greedy")
	if !strings.HasPrefix(cpu.Work, "sha:") || cpu.WorkCPUUs < 95 || cpu.WorkCPUUs > 105 ||
		!strings.HasPrefix(greedy.HeavyWork, "sha:") || greedy.HeavyCPUUs < 19e3 || greedy.HeavyCPUUs > 21e3 || greedy.HeavyShare != 0.05 {
		t.Errorf("sized requests: cpu %+v, greedy %+v", cpu, greedy)
	}
	for _, want := range []string{"requests/s at 4 clients", "light clients' p99 at 4 clients", "- On cpu, ", "Each request was " + cpu.Work,
		"requests/s × 5 ms is how many slept at once", "A heavy request was " + greedy.HeavyWork} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the verdict lacks %q:\n%s", want, stdout)
		}
	}
}

// TestBenchPinsServerAndClient runs one cell with --pin and checks where
// the server and the load generator were allowed to run, and that this
// process gets its CPUs back.
func TestBenchPinsServerAndClient(t *testing.T) {
	t.Setenv("TCPLAB_TEST_MAIN", "1")
	online, err := cpupin.Online()
	if err != nil {
		t.Fatal(err)
	}
	before, err := cpupin.Affinity(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	server, client := strconv.Itoa(online[0]), strconv.Itoa(online[len(online)-1])
	out := t.TempDir()
	code, stdout, stderr := runCmd(t, "bench", "--workload", "echo", "--models", "goroutine", "--clients", "2", "--backlog", "8",
		"--duration", "200ms", "--pin", server+":"+client, "--out", out)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, ": 1 cell: 1 model x workloads echo ") || !strings.Contains(stdout, "bench: 1 of 1 cell ok") {
		t.Errorf("a one-cell grid in the plural:\n%s\n%s", stderr, stdout)
	}
	res := readResults(t, out)
	c := res.Cells[0]
	if c.Status != benchgrid.StatusOK || c.Server.CPUs != server || c.Load.ClientCPUs != client || res.Meta.ServerCPUs != server {
		t.Fatalf("status %s (%s): server ran on %q, client on %q; want %s and %s", c.Status, c.Cause, c.Server.CPUs, c.Load.ClientCPUs, server, client)
	}
	after, err := cpupin.Affinity(os.Getpid())
	if err != nil || !slices.Equal(after, before) {
		t.Fatalf("this process runs on %v after bench, was %v", after, before)
	}
}

// readResults reads the results.json a bench run wrote to dir.
func readResults(t *testing.T, dir string) benchgrid.Results {
	t.Helper()
	var res benchgrid.Results
	b, err := os.ReadFile(filepath.Join(dir, report.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	return res
}

// TestBenchChecksOutBeforeRunning gives --out paths that cannot hold a
// report: bench refuses them with one line before running any cell.
func TestBenchChecksOutBeforeRunning(t *testing.T) {
	t.Setenv("TCPLAB_TEST_MAIN", "1") // should a cell run, its server is this binary
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{file, filepath.Join(file, "sub"), "/proc/nope"} {
		code, stdout, stderr := runCmd(t, "bench", "--workload", "echo", "--models", "goroutine", "--clients", "2", "--backlog", "8",
			"--duration", "200ms", "--out", out)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], "tcplab: --out ") || stdout != "" {
			t.Errorf("--out %s: exit %d, stdout %q, stderr %q; want 2 and one line about --out before any cell", out, code, stdout, stderr)
		}
	}
}
