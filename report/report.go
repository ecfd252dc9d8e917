// Package report writes a benchmark grid's results (package benchgrid) to a
// directory: results.json (everything, and the verdict), results.csv (one
// row per cell), charts as SVG and PNG (gonum.org/v1/plot), summary.md
// (the verdict and the echo table as Markdown, to paste), and index.html,
// which opens with the verdict, shows the charts and tables and needs no
// network: it references only files in the same directory.
//
// The verdict ranks the models of each workload by its key figure (see
// Verdicts): a cell that served under SuccessThreshold of its clients is
// out of the ranking and of the charts, models that saturated the load
// generator are called client-bound, and models closer than the
// run-to-run noise are called a tie.
package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"github.com/tcplab/tcplab/benchgrid"
)

// File names in the output directory.
const (
	JSONFile    = "results.json"
	CSVFile     = "results.csv"
	HTMLFile    = "index.html"
	SummaryFile = "summary.md"
)

// reportFiles are the files every report writes.
var reportFiles = []string{JSONFile, CSVFile, HTMLFile, SummaryFile}

// Write writes the report for res into dir, creating it if needed, and
// returns the paths of the files written. It first removes the files an
// earlier report left there (its charts included), so none is stale.
func Write(dir string, res *benchgrid.Results) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	if err := removeStale(dir); err != nil {
		return nil, fmt.Errorf("report: removing the earlier report: %w", err)
	}
	verdicts := Verdicts(res)
	var files []string
	add := func(name string, err error) error {
		if err != nil {
			return fmt.Errorf("report: %s: %w", name, err)
		}
		files = append(files, filepath.Join(dir, name))
		return nil
	}
	if err := add(JSONFile, writeJSON(filepath.Join(dir, JSONFile), res, verdicts)); err != nil {
		return files, err
	}
	if err := add(CSVFile, writeCSV(filepath.Join(dir, CSVFile), res)); err != nil {
		return files, err
	}
	// A chart that fails costs only itself: the page still shows the
	// table and the charts drawn before it, and the error is returned.
	charts, chartErr := writeCharts(dir, res)
	for _, c := range charts {
		files = append(files, filepath.Join(dir, c.SVG), filepath.Join(dir, c.PNG))
	}
	if err := add(SummaryFile, writeSummary(filepath.Join(dir, SummaryFile), res, verdicts)); err != nil {
		return files, err
	}
	if err := add(HTMLFile, writeHTML(filepath.Join(dir, HTMLFile), res, verdicts, charts)); err != nil {
		return files, err
	}
	if chartErr != nil {
		return files, fmt.Errorf("report: charts: %w", chartErr)
	}
	return files, nil
}

// document is results.json: the results and the verdict.
type document struct {
	*benchgrid.Results
	Verdict []Verdict `json:"verdict"`
}

func writeJSON(path string, res *benchgrid.Results, verdicts []Verdict) error {
	b, err := json.MarshalIndent(document{res, verdicts}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// csvHeader names results.csv's columns.
func csvHeader() []string {
	return []string{
		"workload", "model", "app", "clients", "backlog", "round", "status", "cause",
		"ok_conns", "failed_conns", "dropped_conns", "success_rate",
		"msgs_per_s", "bytes_per_s",
		"p50_us", "p90_us", "p99_us", "p999_us", "max_us",
		"p50_uncorrected_us", "p99_uncorrected_us", "p999_uncorrected_us", "max_uncorrected_us",
		"ingress_msgs_per_s", "delivered_msgs_per_s", "fairness_min", "fairness_max",
		"server_cpu_s", "server_cpu_us_per_msg", "server_peak_rss_bytes", "server_threads", "server_procs",
		"server_voluntary_switches", "server_involuntary_switches", "server_rss_bytes_per_conn",
		"listen_overflows", "listen_drops", "client_cpu_pct", "client_saturated", "serve",
	}
}

func writeCSV(path string, res *benchgrid.Results) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write(csvHeader())
	for _, c := range res.Cells {
		w.Write(csvRow(c))
	}
	w.Flush()
	return closeAfter(f, w.Error())
}

// num formats v in full precision, as results.json does: the shortest
// decimal that reads back as v, without an exponent in JSON's range.
func num(v float64) string {
	if a := math.Abs(v); a != 0 && (a < 1e-6 || a >= 1e21) {
		return strconv.FormatFloat(v, 'e', -1, 64)
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

func closeAfter(f *os.File, err error) error {
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func csvRow(c benchgrid.Cell) []string {
	row := []string{c.Workload, c.Model, c.App, strconv.Itoa(c.Clients), strconv.Itoa(c.Backlog), strconv.Itoa(c.Round), c.Status, c.Cause}
	l := c.Load
	if l == nil {
		for range len(csvHeader()) - len(row) - 1 {
			row = append(row, "")
		}
		return append(row, c.Serve)
	}
	s := c.Server
	return append(row,
		strconv.Itoa(l.OKConns), strconv.Itoa(l.FailedConns), strconv.Itoa(l.DroppedConns), num(l.SuccessRate),
		num(l.MsgsPerS), num(l.BytesPerS),
		num(l.Latency.P50), num(l.Latency.P90), num(l.Latency.P99), num(l.Latency.P999), num(l.Latency.Max),
		num(l.LatencyUncorrected.P50), num(l.LatencyUncorrected.P99), num(l.LatencyUncorrected.P999), num(l.LatencyUncorrected.Max),
		num(l.IngressPerS), num(l.DeliveredPerS), num(l.FairnessMin), num(l.FairnessMax),
		num(s.CPUSeconds), num(s.CPUPerMsgUs), strconv.FormatUint(s.PeakRSS, 10), strconv.Itoa(s.Threads), strconv.Itoa(s.Procs),
		strconv.FormatUint(s.Voluntary, 10), strconv.FormatUint(s.Involuntary, 10), num(s.RSSPerConn),
		strconv.FormatUint(l.ListenOverflows, 10), strconv.FormatUint(l.ListenDrops, 10),
		num(l.ClientCPUPct), strconv.FormatBool(l.ClientSaturated), c.Serve,
	)
}
