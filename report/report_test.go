package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tcplab/tcplab/benchgrid"
	"github.com/tcplab/tcplab/load"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sampleResults builds results for two models that ran and one that was skipped.
// The numbers are inputs to draw, not measurements.
func sampleResults() *benchgrid.Results {
	res := &benchgrid.Results{Meta: benchgrid.Meta{
		Started: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Command: "tcplab bench --quick", Preset: "quick",
		Models: []string{"goroutine", "seq", "uring"}, Repeat: 1, LoadAvg: "0.10 0.20 0.30",
		Workloads: []benchgrid.WorkloadInfo{{Name: "echo", App: "echo", About: "closed-loop echo", Clients: []int{20, 200}, Backlogs: []int{16, 256}, Duration: 1, ConnectTimeout: 1}},
		Host:      "test", Kernel: "6.1", CPUs: 2, GoVersion: "go1.26",
	}}
	for i, m := range []string{"goroutine", "seq"} {
		for _, b := range []int{16, 256} {
			for _, c := range []int{20, 200} {
				ok := c
				if b < c {
					ok = b
				}
				lr := &load.Result{OKConns: ok, FailedConns: c - ok, SuccessRate: float64(ok) / float64(c),
					Msgs: uint64(1000 * (i + 1) * c), MsgsPerS: float64(1000 * (i + 1) * c), Window: 1, Elapsed: 1,
					Latency: load.Percentiles{P50: 10, P90: 20, P99: float64(40 * c), P999: 90, Max: 100}}
				res.Cells = append(res.Cells, benchgrid.Cell{Workload: "echo", Model: m, App: "echo", Clients: c, Backlog: b,
					Status: benchgrid.StatusOK, Load: lr, Server: benchgrid.ServerCost{CPUSeconds: float64(i+1) * 0.5, PeakRSS: 8 << 20}})
			}
		}
	}
	res.Cells = append(res.Cells, benchgrid.Cell{Workload: "echo", Model: "uring", App: "echo", Clients: 20, Backlog: 16,
		Status: benchgrid.StatusSkipped, Cause: "model uring: model not supported here: io_uring_setup: operation not permitted"})
	return res
}

func TestWriteProducesEveryFileOffline(t *testing.T) {
	dir := t.TempDir()
	res := sampleResults()
	files, err := Write(dir, res)
	if err != nil {
		t.Fatal(err)
	}
	// json, csv, summary, html, and SVG+PNG for throughput, p99, cpu.
	if len(files) != 4+2*3 {
		t.Errorf("%d files: %v", len(files), files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || len(b) == 0 {
			t.Fatalf("%s: %d bytes, %v", f, len(b), err)
		}
		switch filepath.Ext(f) {
		case ".png":
			if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
				t.Errorf("%s is not a PNG", f)
			}
		case ".svg":
			if !bytes.Contains(b, []byte("<svg")) {
				t.Errorf("%s is not an SVG", f)
			}
		}
	}
	if err := Offline(dir); err != nil {
		t.Fatal(err)
	}
	html, _ := os.ReadFile(filepath.Join(dir, HTMLFile))
	for _, want := range []string{"uring", "io_uring_setup: operation not permitted", "Connection success rate",
		"throughput against clients", "p99 latency", "server CPU per message", "tcplab bench --quick", "Verdict"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("index.html lacks %q", want)
		}
	}
	// Each chart has its title and axis labels, with units.
	for svg, texts := range map[string][]string{
		"echo-throughput.svg":  {"echo: throughput against clients", "clients (connections)", "messages per second"},
		"echo-p99.svg":         {"echo: p99 latency against clients", "clients (connections)", "p99 latency (ms"},
		"echo-cpu-per-msg.svg": {"echo: server CPU per message", "model", "per message (µs)"},
	} {
		b, err := os.ReadFile(filepath.Join(dir, svg))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range texts {
			if !bytes.Contains(b, []byte(want)) {
				t.Errorf("%s lacks %q", svg, want)
			}
		}
	}

	var back benchgrid.Results
	b, _ := os.ReadFile(filepath.Join(dir, JSONFile))
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Cells, res.Cells) || back.Meta.Command != res.Meta.Command {
		t.Error("results.json does not hold the results")
	}
	f, _ := os.Open(filepath.Join(dir, CSVFile))
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(res.Cells)+1 {
		t.Fatalf("%d csv rows for %d cells", len(rows), len(res.Cells))
	}
	last := rows[len(rows)-1]
	if last[0] != "echo" || last[1] != "uring" || last[6] != benchgrid.StatusSkipped || !strings.Contains(last[7], "not supported") {
		t.Errorf("skipped row %q", last)
	}
}

func TestWriteWithNothingToChart(t *testing.T) {
	dir := t.TempDir()
	res := sampleResults()
	res.Cells = res.Cells[len(res.Cells)-1:]
	files, err := Write(dir, res)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 4 {
		t.Errorf("files %v, want json, csv, summary and html", files)
	}
	if err := Offline(dir); err != nil {
		t.Fatal(err)
	}
}

func TestOfflineRefusesRemoteAndMissingReferences(t *testing.T) {
	for _, page := range []string{
		`<img src="https://example.com/x.png">`,
		`<script src="//cdn.example/x.js"></script>`,
		`<a href="/etc/passwd">x</a>`,
		`<a href="../secret">x</a>`,
		`<img src="missing.svg">`,
		`<style>body { background: url(http://example.com/bg.png) }</style>`,
		`<style>@import "https://example.com/a.css";</style>`,
		`<p>no references at all</p>`,
	} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, HTMLFile), []byte(page), 0o644)
		if err := Offline(dir); err == nil {
			t.Errorf("Offline accepted %s", page)
		}
	}
}

// TestOneCellGridCharts draws a grid of a single cell, which gives every
// axis a range of one value.
func TestOneCellGridCharts(t *testing.T) {
	res := sampleResults()
	res.Cells = res.Cells[:1]
	dir := t.TempDir()
	files, err := Write(dir, res)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 4+2*1 { // one client count: no lines, only the CPU chart
		t.Errorf("%d files: %v", len(files), files)
	}
	if err := Offline(dir); err != nil {
		t.Fatal(err)
	}
}

// TestWriteWithNoLatencyAtTheLargestBacklog has no cell with a positive
// p99 at the largest backlog (every connection timed out there): the p99
// chart, on a log axis, has nothing to show, and says so.
func TestWriteWithNoLatencyAtTheLargestBacklog(t *testing.T) {
	res := sampleResults()
	for i := range res.Cells {
		if l := res.Cells[i].Load; l != nil && res.Cells[i].Backlog == 256 {
			l.Latency = load.Percentiles{}
			l.MsgsPerS = 0
		}
	}
	dir := t.TempDir()
	files, err := Write(dir, res)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 4+2*3 {
		t.Errorf("%d files: %v", len(files), files)
	}
	if err := Offline(dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "echo-p99.svg"))
	if err != nil || !bytes.Contains(b, []byte("no data")) {
		t.Errorf("p99.svg does not say there is no data (%v)", err)
	}
}

// TestCSVKeepsFullPrecision: results.csv has the numbers results.json has,
// not six significant digits.
func TestCSVKeepsFullPrecision(t *testing.T) {
	res := sampleResults()
	l := res.Cells[0].Load
	l.MsgsPerS, l.BytesPerS, l.SuccessRate, l.Latency.P99 = 7627331.123456789, 488149191.9, 0.123456789, 1234.5678
	dir := t.TempDir()
	if _, err := Write(dir, res); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, CSVFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	for name, want := range map[string]string{
		"msgs_per_s": "7627331.123456789", "bytes_per_s": "488149191.9", "success_rate": "0.123456789", "p99_us": "1234.5678",
	} {
		if got := rows[1][col[name]]; got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}

// TestWriteRemovesStaleCharts: charts an earlier report left (of this
// version or the last) go; a file the report does not write stays.
func TestWriteRemovesStaleCharts(t *testing.T) {
	dir := t.TempDir()
	stale := []string{"success-1-goroutine.svg", "success-2-seq.png", "throughput.png", "p99.svg", "cpu-per-msg.png", "chat-p99.svg", SummaryFile}
	for _, f := range append(slices.Clone(stale), "mine.png", "notes.md") {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res := sampleResults()
	res.Cells = res.Cells[len(res.Cells)-1:] // nothing to chart
	if _, err := Write(dir, res); err != nil {
		t.Fatal(err)
	}
	for _, f := range stale[:len(stale)-1] {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Errorf("%s: %v, want it removed", f, err)
		}
	}
	for _, f := range []string{"mine.png", "notes.md"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s was removed: %v", f, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, SummaryFile)); string(b) == "old" {
		t.Error("summary.md was not rewritten")
	}
}

func TestLogTicksLabelSeveralValues(t *testing.T) {
	for _, tc := range []struct {
		lo, hi float64
		want   []string
	}{
		{0.1, 0.9, []string{"0.1", "0.2", "0.5"}},
		{0.3, 40, []string{"0.5", "1", "2", "5", "10", "20"}},
		{150, 700, []string{"200", "500"}},
	} {
		var got []string
		for _, tk := range (logTicks{}).Ticks(tc.lo, tc.hi) {
			if tk.Value < tc.lo || tk.Value > tc.hi {
				t.Errorf("Ticks(%v, %v): tick %v out of range", tc.lo, tc.hi, tk.Value)
			}
			if tk.Label != "" {
				got = append(got, tk.Label)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Ticks(%v, %v) labels %v, want %v", tc.lo, tc.hi, got, tc.want)
		}
	}
}

func TestPercentKeepsSmallAndNearlyFullRates(t *testing.T) {
	for rate, want := range map[float64]string{0: "0.0%", 0.005: "0.5%", 0.0999: "10.0%", 0.5: "50%", 0.996: "99.6%", 0.9999: "99.9%", 1: "100%"} {
		if got := Percent(rate); got != want {
			t.Errorf("Percent(%v) = %s, want %s", rate, got, want)
		}
	}
}

// TestEchoTableListsOnlyItsModels: a column of another workload only (a
// variant such as reactor+offload, of blocking) gets no row of dashes in
// summary.md's echo table; a model that was skipped on echo keeps its row.
func TestEchoTableListsOnlyItsModels(t *testing.T) {
	dir := t.TempDir()
	res := sampleResults()
	res.Meta.Models = append(res.Meta.Models, "reactor+offload")
	if _, err := Write(dir, res); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(md), "\n| reactor+offload |") || !strings.Contains(string(md), "\n| uring | – |") || !strings.Contains(string(md), "\n| goroutine |") {
		t.Errorf("echo table:\n%s", md)
	}
}
