package report

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/tcplab/tcplab/benchgrid"
	"github.com/tcplab/tcplab/internal/english"
)

// writeSummary writes summary.md: the verdict and the echo table in
// Markdown, with the run's date, machine and command, to paste into the
// README.
func writeSummary(path string, res *benchgrid.Results, verdicts []Verdict) error {
	var b bytes.Buffer
	m := res.Meta
	fmt.Fprintf(&b, "Measured %s on %s (Linux %s, %d CPUs, %s), load average %s at the start%s.\n",
		m.Started.Format("2006-01-02"), m.Host, m.Kernel, m.CPUs, m.GoVersion, orUnknown(m.LoadAvg), busyNote(m))
	fmt.Fprintf(&b, "Command: `%s` (%s preset, %d %s, %.0f s).\n\n", m.Command, m.Preset, m.Repeat, english.Noun(m.Repeat, "round", "rounds"), m.Seconds)
	writeMatrixMarkdown(&b, res, verdicts)
	for _, w := range m.Workloads {
		if w.App == "echo" && w.Name != "idle" && w.Name != "short" && len(w.Backlogs) > 1 {
			writeEchoTable(&b, res, w)
			break
		}
	}
	if len(verdicts) > 0 {
		fmt.Fprintf(&b, "\n%s\n", NoiseLine(verdicts))
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// busyNote says the machine was busy when the run started: a 1-minute
// load average of half its CPUs or more, before the bench's own load.
func busyNote(m benchgrid.Meta) string {
	if f := strings.Fields(m.LoadAvg); len(f) > 0 {
		if l, err := strconv.ParseFloat(f[0], 64); err == nil && m.CPUs > 0 && l >= float64(m.CPUs)/2 {
			return " (a busy machine: something else was using the CPUs as the run started; rerun quiet before trusting the numbers)"
		}
	}
	return ""
}

// writeEchoTable writes the echo workload at its largest client count:
// for each backlog, the success rate and the kernel's ListenOverflows;
// then msgs/s and server CPU per message at the largest backlog. Then what
// varies from run to run, and why.
func writeEchoTable(w io.Writer, res *benchgrid.Results, wl benchgrid.WorkloadInfo) {
	clients, top := slices.Max(wl.Clients), slices.Max(wl.Backlogs)
	fmt.Fprintf(w, "\n`%s` at %d clients, %g s per cell (the first round):\n\n| model |", wl.Name, clients, wl.Duration)
	for _, b := range wl.Backlogs {
		fmt.Fprintf(w, " backlog %d: success (ListenOverflows) |", b)
	}
	fmt.Fprintf(w, " msgs/s | server CPU/msg |\n|---|%s---|---|\n", strings.Repeat("---|", len(wl.Backlogs)))
	cell := func(model string, backlog int) *benchgrid.Cell {
		for i, c := range res.Cells {
			if c.Workload == wl.Name && c.Model == model && c.Clients == clients && c.Backlog == backlog && c.Round == 0 {
				return &res.Cells[i]
			}
		}
		return nil
	}
	var fork *benchgrid.Cell
	for _, model := range res.Meta.Models {
		if !slices.ContainsFunc(res.Cells, func(c benchgrid.Cell) bool { return c.Workload == wl.Name && c.Model == model }) {
			continue // a column of another workload only (a variant such as reactor+offload)
		}
		fmt.Fprintf(w, "| %s |", model)
		for _, b := range wl.Backlogs {
			c := cell(model, b)
			switch {
			case c == nil:
				fmt.Fprint(w, " – |")
			case c.Load == nil:
				fmt.Fprintf(w, " %s |", c.Status)
			default:
				fmt.Fprintf(w, " %s (+%d) |", Percent(c.Load.SuccessRate), c.Load.ListenOverflows)
			}
		}
		c := cell(model, top)
		if c == nil || c.Load == nil {
			fmt.Fprint(w, " – | – |\n")
			continue
		}
		if model == "fork" {
			fork = c
		}
		if c.Load.SuccessRate < SuccessThreshold {
			fmt.Fprintf(w, " (%s served) | – |\n", Percent(c.Load.SuccessRate))
			continue
		}
		fmt.Fprintf(w, " %s | %s |\n", human(c.Load.MsgsPerS), formatUs(c.Server.CPUPerMsgUs))
	}
	fmt.Fprintf(w, "\nWhat varies from run to run: a burst of %d connections into a small backlog overflows the accept queue "+
		"(ListenOverflows rises by about the number of clients that failed); the kernel retries a dropped SYN after 1 s, "+
		"against a connect timeout of %g s, so how many get in depends on how fast the model drains the queue in the "+
		"first instants, which other jobs on the machine change.", clients, wl.ConnectTimeout)
	if fork != nil {
		fmt.Fprintf(w, " `fork` starts one process per connection: %d process start-ups within the %g s timeout "+
			"(it reached %d processes at once, served %s at backlog %d), so its success and its CPU per message depend on "+
			"how fast this machine starts processes at that moment.", clients, wl.ConnectTimeout, fork.Server.Procs, Percent(fork.Load.SuccessRate), top)
	}
	fmt.Fprintln(w)
}
