package report

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/tcplab/tcplab/benchgrid"
)

// chart is one chart, written as name.svg and name.png.
type chart struct {
	Title    string
	SVG, PNG string
	// Note says what the chart leaves out, and its rule.
	Note string
}

const (
	chartW = 18 * vg.Centimeter
	chartH = 10 * vg.Centimeter
)

// chartFile matches the charts this package writes, and wrote in earlier
// versions (success-N-MODEL, throughput, p99, cpu-per-msg), so a new
// report in the same directory removes stale ones.
var chartFile = regexp.MustCompile(`^(success-\d+-[A-Za-z0-9_-]+|throughput|p99|cpu-per-msg|[a-z0-9_-]+-(throughput|p99|cpu-per-msg))\.(svg|png)$`)

// removeStale removes the report files an earlier run left in dir: its
// charts, and the files every report writes.
func removeStale(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if e.Type().IsRegular() && (chartFile.MatchString(name) || slices.Contains(reportFiles, name)) {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return err
			}
		}
	}
	return nil
}

// grid indexes one workload's cells.
type grid struct {
	workload string
	models   []string // models with at least one ok cell, in run order
	clients  []int
	backlogs []int
	cells    map[key][]benchgrid.Cell // every round
}

type key struct {
	model            string
	clients, backlog int
}

func index(res *benchgrid.Results, workload string) grid {
	g := grid{workload: workload, cells: map[key][]benchgrid.Cell{}}
	for _, c := range res.Cells {
		if c.Workload != workload || c.Status != benchgrid.StatusOK || c.Load == nil {
			continue
		}
		if !slices.Contains(g.models, c.Model) {
			g.models = append(g.models, c.Model)
		}
		if !slices.Contains(g.clients, c.Clients) {
			g.clients = append(g.clients, c.Clients)
		}
		if !slices.Contains(g.backlogs, c.Backlog) {
			g.backlogs = append(g.backlogs, c.Backlog)
		}
		k := key{c.Model, c.Clients, c.Backlog}
		g.cells[k] = append(g.cells[k], c)
	}
	slices.Sort(g.clients)
	slices.Sort(g.backlogs)
	return g
}

// value is the median over rounds of value at k, and whether every round
// served at least SuccessThreshold of its clients.
func (g *grid) value(k key, value func(benchgrid.Cell) float64) (v float64, served bool, ok bool) {
	cs := g.cells[k]
	if len(cs) == 0 {
		return 0, false, false
	}
	var vals []float64
	served = true
	for _, c := range cs {
		vals = append(vals, value(c))
		served = served && c.Load.SuccessRate >= SuccessThreshold
	}
	slices.Sort(vals)
	return vals[len(vals)/2], served, true
}

// writeCharts draws every chart the results allow and returns them in the
// order the report shows them: for each workload with more than one
// client count, throughput and p99 against clients; then server CPU per
// message of the first echo workload.
func writeCharts(dir string, res *benchgrid.Results) ([]chart, error) {
	var out []chart
	save := func(p *plot.Plot, name, note string) error {
		c := chart{Title: p.Title.Text, SVG: name + ".svg", PNG: name + ".png", Note: note}
		for _, f := range []string{c.SVG, c.PNG} {
			if err := savePlot(p, filepath.Join(dir, f)); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
		}
		out = append(out, c)
		return nil
	}
	cpuDone := false
	for _, w := range res.Meta.Workloads {
		g := index(res, w.Name)
		if len(g.models) == 0 {
			continue
		}
		if len(g.clients) > 1 {
			backlog := g.backlogs[len(g.backlogs)-1]
			lines := []struct {
				name, title, ylabel string
				value               func(benchgrid.Cell) float64
				log                 bool
			}{
				{"throughput", "%s: throughput against clients (backlog %d)", "messages per second",
					func(c benchgrid.Cell) float64 { return c.Load.MsgsPerS }, false},
				{"p99", "%s: p99 latency against clients (backlog %d)", "p99 latency (ms, log scale)",
					func(c benchgrid.Cell) float64 { return c.Load.Latency.P99 / 1e3 }, true},
			}
			for _, l := range lines {
				p, note, err := g.lines(fmt.Sprintf(l.title, w.Name, backlog), l.ylabel, backlog, l.value, l.log)
				if err != nil {
					return out, err
				}
				if err := save(p, w.Name+"-"+l.name, note); err != nil {
					return out, err
				}
			}
		}
		if !cpuDone && w.App == "echo" && w.Name != "idle" {
			cpuDone = true
			p, note, err := g.cpuPerMsg()
			if err != nil {
				return out, err
			}
			if err := save(p, w.Name+"-cpu-per-msg", note); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// savePlot saves p with its legend, if any, to the right of the data
// area rather than over it, turning a panic inside the plotting library
// (it panics on some degenerate axes) into an error.
func savePlot(p *plot.Plot, path string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("plot: %v", r)
		}
	}()
	c, err := draw.NewFormattedCanvas(chartW, chartH, strings.TrimPrefix(filepath.Ext(path), "."))
	if err != nil {
		return err
	}
	dc := draw.New(c)
	legend := p.Legend
	p.Legend = plot.NewLegend()
	defer func() { p.Legend = legend }()
	var lw vg.Length
	if r := legend.Rectangle(dc); r.Max.X > r.Min.X {
		lw = r.Max.X - r.Min.X + vg.Points(12)
	}
	p.Draw(draw.Crop(dc, 0, -lw, 0, 0))
	if lw > 0 {
		legend.Top, legend.Left = true, true
		legend.Draw(draw.Crop(dc, chartW-lw+vg.Points(6), 0, 0, -vg.Points(24)))
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = c.WriteTo(f)
	return closeAfter(f, err)
}

// valueTicks marks each value at its own position.
func valueTicks(values []int) plot.ConstantTicks {
	t := make(plot.ConstantTicks, len(values))
	for i, v := range values {
		t[i] = plot.Tick{Value: float64(v), Label: strconv.Itoa(v)}
	}
	return t
}

// humanTicks are gonum's default ticks labelled 1.5k, 20k, 1.2M.
type humanTicks struct{}

func (humanTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i, t := range ticks {
		if t.Label != "" {
			ticks[i].Label = tickLabel(t.Value)
		}
	}
	return ticks
}

// tickLabel labels a value as 0.2, 5, 1.5k, 20k or 1.2M.
func tickLabel(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case a >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// logTicks label 1, 2 and 5 of every decade in range, so a log axis
// spanning less than a decade still has several labels; the other
// integers of a decade are unlabelled minor ticks.
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for e := math.Floor(math.Log10(lo)); math.Pow(10, e) <= hi; e++ {
		decade := math.Pow(10, e)
		for i := 1; i < 10; i++ {
			v := float64(i) * decade
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if i == 1 || i == 2 || i == 5 {
				// Round away float noise (0.30000000000000004).
				t.Label = tickLabel(math.Round(v/decade) * decade)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

// lines plots value against clients, one line per model, at one backlog.
// Cells that served under SuccessThreshold of their clients are left out:
// their numbers come from the few clients served. The note says which.
func (g *grid) lines(title, ylabel string, backlog int, value func(benchgrid.Cell) float64, log bool) (*plot.Plot, string, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "clients (connections)"
	p.Y.Label.Text = ylabel
	p.X.Tick.Marker = valueTicks(g.clients)
	p.Y.Tick.Marker = humanTicks{}
	if log {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = logTicks{}
	}
	var args []any
	var left []string
	for _, m := range g.models {
		var xys plotter.XYs
		for _, n := range g.clients {
			v, served, ok := g.value(key{m, n, backlog}, value)
			switch {
			case !ok:
				continue
			case !served:
				left = append(left, fmt.Sprintf("%s at %d", m, n))
				continue
			}
			if !math.IsNaN(v) && (!log || v > 0) {
				xys = append(xys, plotter.XY{X: float64(n), Y: v})
			}
		}
		if len(xys) > 0 {
			args = append(args, m, xys)
		}
	}
	note := fmt.Sprintf("Only cells that served at least %.0f%% of their clients are drawn.", 100*SuccessThreshold)
	if len(left) > 0 {
		note += " Left out (under the threshold): " + strings.Join(left, ", ") + " clients."
	}
	if len(args) == 0 {
		// An empty log axis cannot be drawn: show an empty linear one.
		p.Title.Text += ": no data"
		p.Y.Scale, p.Y.Tick.Marker = plot.LinearScale{}, plot.ConstantTicks{}
		p.Y.Min, p.Y.Max = 0, 1
		if len(g.clients) > 0 {
			p.X.Min, p.X.Max = float64(g.clients[0]), float64(g.clients[len(g.clients)-1])
		}
		return p, note, nil
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return nil, "", err
	}
	if log {
		// Pad the range by a factor of 1.5 each way: gonum's own padding
		// can go below zero, which a log axis cannot show.
		lo, hi := math.Inf(1), math.Inf(-1)
		for i := 1; i < len(args); i += 2 {
			for _, xy := range args[i].(plotter.XYs) {
				lo, hi = min(lo, xy.Y), max(hi, xy.Y)
			}
		}
		p.Y.Min, p.Y.Max = lo/1.5, hi*1.5
	} else {
		p.Y.Min = 0
	}
	return p, note, nil
}

// cpuPerMsg plots each model's server CPU time per message: its total
// server CPU over its total messages, across the cells that served at
// least SuccessThreshold of their clients. A model with no such cell, or
// no message, gets no bar and says so under the axis.
func (g *grid) cpuPerMsg() (*plot.Plot, string, error) {
	p := plot.New()
	p.Title.Text = g.workload + ": server CPU per message"
	p.X.Label.Text = "model"
	p.Y.Label.Text = "server CPU time per message (µs)"
	names := make([]string, len(g.models))
	var none []string
	for i, m := range g.models {
		var cpu, msgs float64
		for k, cs := range g.cells {
			for _, c := range cs {
				if k.model == m && c.Load.SuccessRate >= SuccessThreshold {
					cpu += c.Server.CPUSeconds
					msgs += float64(c.Load.Msgs)
				}
			}
		}
		names[i] = m
		if msgs == 0 {
			// No bar at all: a zero bar would read as free.
			names[i] = m + "\n(none)"
			none = append(none, m)
			continue
		}
		bar, err := plotter.NewBarChart(plotter.Values{1e6 * cpu / msgs}, vg.Points(20))
		if err != nil {
			return nil, "", err
		}
		bar.XMin, bar.Color = float64(i), plotutil.Color(0)
		p.Add(bar)
	}
	p.NominalX(names...)
	p.Y.Min = 0
	note := fmt.Sprintf("Each bar is the model's total server CPU time divided by its total messages, over its cells that served at least %.0f%% of their clients.", 100*SuccessThreshold)
	if len(none) > 0 {
		note += " No bar: " + andList(none) + " had no such cell (not free: nothing to divide)."
	}
	return p, note, nil
}
