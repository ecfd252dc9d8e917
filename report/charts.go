package report

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/palette"
	"gonum.org/v1/plot/palette/moreland"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/tcplab/tcplab/benchgrid"
)

// chart is one chart, written as name.svg and name.png.
type chart struct {
	Title    string
	SVG, PNG string
}

const (
	chartW = 16 * vg.Centimeter
	chartH = 10 * vg.Centimeter
)

// grid indexes a result's ok cells.
type grid struct {
	models   []string // models with at least one ok cell, in run order
	clients  []int
	backlogs []int
	cells    map[key]benchgrid.Cell
}

type key struct {
	model            string
	clients, backlog int
}

func index(res *benchgrid.Results) grid {
	g := grid{cells: map[key]benchgrid.Cell{}}
	for _, c := range res.Cells {
		if c.Status != benchgrid.StatusOK || c.Load == nil {
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
		g.cells[key{c.Model, c.Clients, c.Backlog}] = c
	}
	slices.Sort(g.clients)
	slices.Sort(g.backlogs)
	return g
}

// writeCharts draws every chart the results allow and returns them in the
// order the report shows them.
func writeCharts(dir string, res *benchgrid.Results) ([]chart, error) {
	g := index(res)
	if len(g.models) == 0 {
		return nil, nil
	}
	var out []chart
	save := func(p *plot.Plot, name string) error {
		c := chart{Title: p.Title.Text, SVG: name + ".svg", PNG: name + ".png"}
		for _, f := range []string{c.SVG, c.PNG} {
			if err := savePlot(p, filepath.Join(dir, f)); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
		}
		out = append(out, c)
		return nil
	}
	for i, m := range g.models {
		p, err := g.heatmap(m)
		if err != nil {
			return out, err
		}
		if err := save(p, "success-"+strconv.Itoa(i+1)+"-"+safeName(m)); err != nil {
			return out, err
		}
	}
	backlog := g.backlogs[len(g.backlogs)-1]
	lines := []struct {
		name, title, ylabel string
		value               func(benchgrid.Cell) float64
		log                 bool
	}{
		{"throughput", "Throughput against clients (backlog %d)", "messages per second",
			func(c benchgrid.Cell) float64 { return c.Load.MsgsPerS }, false},
		{"p99", "p99 latency against clients (backlog %d)", "p99 latency (ms, log scale)",
			func(c benchgrid.Cell) float64 { return c.Load.Latency.P99 / 1e3 }, true},
	}
	for _, l := range lines {
		p, err := g.lines(fmt.Sprintf(l.title, backlog), l.ylabel, backlog, l.value, l.log)
		if err != nil {
			return out, err
		}
		if err := save(p, l.name); err != nil {
			return out, err
		}
	}
	p, err := g.cpuPerMsg()
	if err != nil {
		return out, err
	}
	return out, save(p, "cpu-per-msg")
}

// savePlot saves p, turning a panic inside the plotting library (it panics
// on some degenerate axes) into an error.
func savePlot(p *plot.Plot, path string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("plot: %v", r)
		}
	}()
	return p.Save(chartW, chartH, path)
}

// safeName keeps a model name usable as a file name.
func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// successGrid is one model's success rates for the heat map, on index
// coordinates (the axes label them with the real values).
type successGrid struct {
	g     *grid
	model string
}

func (s successGrid) Dims() (c, r int)   { return len(s.g.clients), len(s.g.backlogs) }
func (s successGrid) X(c int) float64    { return float64(c) }
func (s successGrid) Y(r int) float64    { return float64(r) }
func (s successGrid) Min() float64       { return 0 }
func (s successGrid) Max() float64       { return 1 }
func (s successGrid) Z(c, r int) float64 { return s.g.success(s.model, c, r) }

func (g *grid) success(model string, c, r int) float64 {
	cell, ok := g.cells[key{model, g.clients[c], g.backlogs[r]}]
	if !ok {
		return math.NaN()
	}
	return cell.Load.SuccessRate
}

func (g *grid) heatmap(model string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Connection success rate, " + model
	p.X.Label.Text = "clients (connections)"
	p.Y.Label.Text = "listen backlog (connections)"
	cmap := moreland.SmoothBlueRed()
	cmap.SetMin(0)
	cmap.SetMax(1)
	h := plotter.NewHeatMap(successGrid{g, model}, palette.Reverse(cmap).Palette(64))
	h.NaN = color.Gray{Y: 200}
	p.Add(h)
	var labels plotter.XYLabels
	for c := range g.clients {
		for r := range g.backlogs {
			v := g.success(model, c, r)
			text := "n/a"
			if !math.IsNaN(v) {
				text = fmt.Sprintf("%.0f%%", 100*v)
			}
			labels.XYs = append(labels.XYs, plotter.XY{X: float64(c), Y: float64(r)})
			labels.Labels = append(labels.Labels, text)
		}
	}
	l, err := plotter.NewLabels(labels)
	if err != nil {
		return nil, err
	}
	for i := range l.TextStyle {
		l.TextStyle[i].XAlign, l.TextStyle[i].YAlign = -0.5, -0.5
	}
	p.Add(l)
	p.X.Tick.Marker = indexTicks(g.clients)
	p.Y.Tick.Marker = indexTicks(g.backlogs)
	p.X.Min, p.X.Max = -0.5, float64(len(g.clients))-0.5
	p.Y.Min, p.Y.Max = -0.5, float64(len(g.backlogs))-0.5
	return p, nil
}

// indexTicks labels index positions 0, 1, ... with values.
func indexTicks(values []int) plot.ConstantTicks {
	t := make(plot.ConstantTicks, len(values))
	for i, v := range values {
		t[i] = plot.Tick{Value: float64(i), Label: strconv.Itoa(v)}
	}
	return t
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
		if t.Label == "" {
			continue
		}
		switch v := math.Abs(t.Value); {
		case v >= 1e6:
			ticks[i].Label = strconv.FormatFloat(t.Value/1e6, 'f', -1, 64) + "M"
		case v >= 1e3:
			ticks[i].Label = strconv.FormatFloat(t.Value/1e3, 'f', -1, 64) + "k"
		default:
			ticks[i].Label = strconv.FormatFloat(t.Value, 'f', -1, 64)
		}
	}
	return ticks
}

// lines plots value against clients, one line per model, at one backlog.
func (g *grid) lines(title, ylabel string, backlog int, value func(benchgrid.Cell) float64, log bool) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "clients (connections)"
	p.Y.Label.Text = ylabel
	p.X.Tick.Marker = valueTicks(g.clients)
	p.Y.Tick.Marker = humanTicks{}
	if log {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	var args []any
	for _, m := range g.models {
		var xys plotter.XYs
		for _, n := range g.clients {
			c, ok := g.cells[key{m, n, backlog}]
			if !ok {
				continue
			}
			if v := value(c); !math.IsNaN(v) && (!log || v > 0) {
				xys = append(xys, plotter.XY{X: float64(n), Y: v})
			}
		}
		if len(xys) > 0 {
			args = append(args, m, xys)
		}
	}
	if len(args) == 0 {
		// An empty log axis cannot be drawn: show an empty linear one.
		p.Title.Text += ": no data"
		p.Y.Scale, p.Y.Tick.Marker = plot.LinearScale{}, plot.ConstantTicks{}
		p.Y.Min, p.Y.Max = 0, 1
		if len(g.clients) > 0 {
			p.X.Min, p.X.Max = float64(g.clients[0]), float64(g.clients[len(g.clients)-1])
		}
		return p, nil
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return nil, err
	}
	if log {
		// Pad the range by a factor of two each way: gonum's own padding
		// can go below zero, which a log axis cannot show.
		lo, hi := math.Inf(1), math.Inf(-1)
		for i := 1; i < len(args); i += 2 {
			for _, xy := range args[i].(plotter.XYs) {
				lo, hi = min(lo, xy.Y), max(hi, xy.Y)
			}
		}
		p.Y.Min, p.Y.Max = lo/2, hi*2
	}
	p.Legend.Top = true
	return p, nil
}

// cpuPerMsg plots each model's server CPU time per message over all its ok
// cells (total CPU / total messages).
func (g *grid) cpuPerMsg() (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Server CPU per message, all ok cells"
	p.X.Label.Text = "model"
	p.Y.Label.Text = "server CPU time per message (µs)"
	vals := make(plotter.Values, len(g.models))
	for i, m := range g.models {
		var cpu, msgs float64
		for k, c := range g.cells {
			if k.model == m {
				cpu += c.Server.CPUSeconds
				msgs += float64(c.Load.Msgs)
			}
		}
		if msgs > 0 {
			vals[i] = 1e6 * cpu / msgs
		}
	}
	bars, err := plotter.NewBarChart(vals, vg.Points(20))
	if err != nil {
		return nil, err
	}
	bars.Color = plotutil.Color(0)
	p.Add(bars)
	p.NominalX(g.models...)
	return p, nil
}
