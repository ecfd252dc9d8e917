package report

import (
	"fmt"
	"html/template"
	"maps"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/tcplab/tcplab/benchgrid"
)

// page is what index.html shows.
type page struct {
	Meta      benchgrid.Meta
	Busy      string
	Threshold string
	Models    []string
	Matrix    []MatrixRow
	Legend    string
	Noise     string
	Skipped   []skip
	Workloads []workloadView
	JSON, CSV string
	Summary   string
}

type skip struct{ Model, Cause string }

// workloadView is one workload's section: its success map, charts and
// cells.
type workloadView struct {
	Info   benchgrid.WorkloadInfo
	Figure string
	// Requests says what a work workload's clients sent, as sized.
	Requests string
	// FigureCol shows the key figure in its own column, unless it is
	// msgs/s, which has one.
	FigureCol bool
	Success   *successMap
	Charts    []chart
	Rows      []cellRow
}

// successMap is a workload's success rates, models by (backlog, clients).
type successMap struct {
	Columns []string // "b16 c20"
	Rows    []successRow
}

type successRow struct {
	Model string
	Cells []successCell
}

type successCell struct {
	Text, Style, Title string
}

// cellRow is one cell of the cells table, formatted.
type cellRow struct {
	Class, Model, Clients, Backlog, Round string
	Flags                                 []string
	Status, Served, Figure, Msgs          string
	P50, P99, Max                         string
	CPUMsg, CPUPct, RSS, ThrProc          string
	Switches, Overflows, ClientCPU        string
}

// The page uses no script, font, style sheet or image from elsewhere: the
// style is inline and every src and href names a file in the directory.
const pageHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>tcplab bench report</title>
<style>
body { font-family: sans-serif; margin: 1.5em; max-width: 1320px; color: #222; line-height: 1.35; }
h1 { margin-bottom: 0.2em; }
p.sub { margin-top: 0; color: #555; }
table { border-collapse: collapse; font-size: 13px; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.4em; text-align: right; vertical-align: top; }
table.cells td { white-space: nowrap; }
th { background: #eee; font-weight: 600; }
td.l, th.l { text-align: left; }
table.verdict td { min-width: 6.5em; }
table.verdict td b.v { white-space: nowrap; font-weight: inherit; }
table.verdict td small, table.cells td small { display: block; color: #666; font-size: 11px; }
td.best { background: #c8ecc8; font-weight: bold; }
td.tied { background: #e6f5e6; }
td.out, td.skipped, td.none { color: #777; font-style: italic; background: repeating-linear-gradient(45deg, #fff, #fff 4px, #f0f0f0 4px, #f0f0f0 8px); }
ul.why li { margin: 0.3em 0; }
tr.skipped td, tr.error td { color: #a00; }
tr.under td { color: #888; }
span.flag { display: inline-block; padding: 0 0.3em; margin: 1px; border-radius: 3px; font-size: 11px; background: #fde2b8; color: #6a3d00; white-space: nowrap; }
span.flag.under { background: #e4e4e4; color: #444; }
span.flag.bad { background: #f6c6c6; color: #700; }
table.success td { min-width: 4em; text-align: center; }
td.na { background: #fff; color: #999; font-style: italic; border-style: dashed; }
.scale { display: inline-block; vertical-align: middle; width: 16em; height: 0.9em; border: 1px solid #999;
  background: linear-gradient(to right, hsl(0,70%,55%), hsl(60,80%,60%), hsl(120,50%,55%)); }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; vertical-align: top; width: 640px; }
figure img { width: 640px; }
figcaption { font-size: 13px; color: #444; }
dl.defs dt { font-weight: bold; float: left; clear: left; width: 11em; }
dl.defs dd { margin-left: 12em; margin-bottom: 0.3em; }
dl.run dt { font-weight: bold; }
</style>
</head>
<body>
<h1>tcplab bench report</h1>
<p class="sub">{{.Meta.Started.Format "2006-01-02 15:04 MST"}} on {{.Meta.Host}} ({{.Meta.CPUs}} CPUs), {{.Meta.Preset}} preset, {{printf "%.0f" .Meta.Seconds}} s; load average {{.Meta.LoadAvg}} at the start{{.Busy}}.
Raw data: <a href="{{.JSON}}">{{.JSON}}</a>, <a href="{{.CSV}}">{{.CSV}}</a>; Markdown to paste: <a href="{{.Summary}}">{{.Summary}}</a>.</p>

<h2>Verdict: which model for which workload</h2>
<table class="verdict">
<tr><th class="l">workload</th><th class="l">key figure</th>{{range .Models}}<th>{{.}}</th>{{end}}</tr>
{{range .Matrix}}<tr><td class="l"><b>{{.Verdict.Workload}}</b></td><td class="l">{{.Verdict.Figure}}<small>{{.Verdict.Better}} is better</small></td>
{{range .Cells}}<td class="{{.Class}}" title="{{.Note}}"><b class="v">{{if .Mark}}{{.Mark}} {{end}}{{.Text}}</b>{{if .Short}}<small>{{.Short}}</small>{{end}}</td>{{end}}</tr>
{{end}}</table>
<p>{{.Legend}}. {{.Noise}}</p>
<ul class="why">{{range .Matrix}}<li>{{.Verdict.Why}}</li>{{end}}</ul>

<h2>The run</h2>
<dl class="run">
<dt>Command</dt><dd><code>{{.Meta.Command}}</code> ({{.Meta.Preset}} preset, {{.Meta.Repeat}} round{{if gt .Meta.Repeat 1}}s{{end}})</dd>
<dt>Machine</dt><dd>{{.Meta.Host}}, Linux {{.Meta.Kernel}}, {{.Meta.CPUs}} CPUs, {{.Meta.GoVersion}}; load average {{.Meta.LoadAvg}} when the run started</dd>
<dt>Pinning</dt><dd>{{if .Meta.ServerCPUs}}server on CPUs {{.Meta.ServerCPUs}}, load generator on CPUs {{.Meta.ClientCPUs}}{{else}}none: server and load generator share every CPU{{end}}</dd>
<dt>Models</dt><dd>{{join .Meta.Models}}</dd>
<dt>Workloads</dt><dd><ul>{{range .Workloads}}<li><b>{{.Info.Name}}</b> ({{.Info.App}} app): {{.Info.About}}; clients {{ints .Info.Clients}}, backlogs {{ints .Info.Backlogs}}, {{.Info.Duration}} s per cell, connect timeout {{.Info.ConnectTimeout}} s</li>{{end}}</ul></dd>
</dl>
{{if .Skipped}}<h2>Skipped</h2>
<ul>{{range .Skipped}}<li><b>{{.Model}}</b>: {{.Cause}}</li>{{end}}</ul>{{end}}

{{range .Workloads}}<h2>Workload {{.Info.Name}}</h2>
<p>{{.Info.About}}.{{with .Requests}} {{.}}.{{end}} Key figure: {{.Figure}}.</p>
{{with .Success}}<p>Connection success rate (clients served of those that tried) by backlog and clients.
Scale: <span class="scale"></span> 0% → 50% → 100%; <i>n/a</i>: no result (skipped or failed).</p>
<table class="success"><tr><th class="l">model</th>{{range .Columns}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr><td class="l">{{.Model}}</td>{{range .Cells}}{{if .Style}}<td style="{{css .Style}}" title="{{.Title}}">{{.Text}}</td>{{else}}<td class="na" title="{{.Title}}">n/a</td>{{end}}{{end}}</tr>
{{end}}</table>{{end}}
{{range .Charts}}<figure><a href="{{.PNG}}"><img src="{{.SVG}}" alt="{{.Title}}"></a><figcaption>{{.Title}} (<a href="{{.SVG}}">SVG</a>, <a href="{{.PNG}}">PNG</a>). {{.Note}}</figcaption></figure>
{{end}}
<table class="cells">
<tr><th class="l">model</th><th>clients</th><th>backlog</th>{{if gt $.Meta.Repeat 1}}<th>round</th>{{end}}<th class="l">flags</th><th>served</th>{{if .FigureCol}}<th>{{.Figure}}</th>{{end}}<th>msgs/s</th>
<th>p50</th><th>p99</th><th>max</th><th>server CPU /msg</th><th>server CPU %</th><th>peak RSS</th><th>threads / procs</th><th>ctx sw. vol / invol</th><th>Listen Overflows / Drops</th><th>client CPU %</th></tr>
{{$w := .}}{{range .Rows}}<tr class="{{.Class}}"><td class="l">{{.Model}}</td><td>{{.Clients}}</td><td>{{.Backlog}}</td>{{if gt $.Meta.Repeat 1}}<td>{{.Round}}</td>{{end}}<td class="l">{{range .Flags}}{{flag .}}{{end}}</td>
{{if .Status}}<td class="l" colspan="{{if $w.FigureCol}}13{{else}}12{{end}}">{{.Status}}</td>{{else}}<td>{{.Served}}</td>{{if $w.FigureCol}}<td>{{.Figure}}</td>{{end}}<td>{{.Msgs}}</td><td>{{.P50}}</td><td>{{.P99}}</td><td>{{.Max}}</td>
<td>{{.CPUMsg}}</td><td>{{.CPUPct}}</td><td>{{.RSS}}</td><td>{{.ThrProc}}</td><td>{{.Switches}}</td><td>{{.Overflows}}</td><td>{{.ClientCPU}}</td>{{end}}</tr>
{{end}}</table>
{{end}}

<h2>How to read this</h2>
<dl class="defs">
<dt>served</dt><dd>connections whose first application round trip (an echo, or the chat server's HELLO) completed within the connect timeout, of those that tried. A cell under {{.Threshold}} is out of the verdict's ranking and of the charts: its numbers come from the few clients served.</dd>
<dt>flags</dt><dd><i>client-bound</i>: the load generator used 90% or more of a core, so the client, not the server, may have set the figures; <i>under {{.Threshold}}</i>: served too few clients to rank.</dd>
<dt>p50, p99, max</dt><dd>latency from the time each message was sent (closed loop) or due (open loop and chat).</dd>
<dt>server CPU /msg</dt><dd>the server process tree's CPU time (user + system, child processes included) over the messages completed in the cell.</dd>
<dt>server CPU %</dt><dd>that CPU time over the load's wall time, in percent of one core (up to 100 × CPUs).</dd>
<dt>peak RSS</dt><dd>the largest resident memory of the server's processes seen during the load, summed over processes (a page shared by several counts once per process).</dd>
<dt>threads / procs</dt><dd>the most threads and processes the server had at once.</dd>
<dt>ctx sw. vol / invol</dt><dd>context switches of the server's threads during the load: voluntary (a thread blocked, e.g. waiting for input) and involuntary (the scheduler preempted it).</dd>
<dt>Listen Overflows / Drops</dt><dd>the kernel's counts of handshakes a full accept queue dropped, for the whole machine during the cell.</dd>
<dt>client CPU %</dt><dd>the load generator's CPU time over the run, in percent of one core; it runs on several cores, so it can pass 100.</dd>
</dl>
<p>On a machine with few cores, server and client compete unless pinned (--pin), and other jobs move every number: compare within one report, and repeat (--repeat) before trusting a small difference.</p>
</body>
</html>
`

func writeHTML(path string, res *benchgrid.Results, verdicts []Verdict, charts []chart) error {
	funcs := template.FuncMap{
		"join": func(s []string) string { return strings.Join(s, ", ") },
		"ints": func(v []int) string { return strings.Trim(fmt.Sprint(v), "[]") },
		"css":  func(s string) template.CSS { return template.CSS(s) },
		"flag": func(f string) template.HTML {
			class := "flag"
			if strings.HasPrefix(f, "under") {
				class += " under"
			} else if f != "client-bound" {
				class += " bad"
			}
			return template.HTML(`<span class="` + class + `">` + template.HTMLEscapeString(f) + `</span>`)
		},
	}
	t, err := template.New("page").Funcs(funcs).Parse(pageHTML)
	if err != nil {
		return err
	}
	pg := page{
		Meta: res.Meta, Busy: busyNote(res.Meta), Threshold: fmt.Sprintf("%.0f%%", 100*SuccessThreshold),
		Models: res.Meta.Models, Matrix: Matrix(res, verdicts), Legend: MatrixLegend(),
		JSON: JSONFile, CSV: CSVFile, Summary: SummaryFile,
	}
	pg.Noise = NoiseLine(verdicts)
	skipped := res.Skipped()
	for _, m := range res.Meta.Models {
		if cause, ok := skipped[m]; ok {
			pg.Skipped = append(pg.Skipped, skip{m, cause})
		}
	}
	for _, m := range slices.Sorted(maps.Keys(skipped)) {
		if !slices.Contains(res.Meta.Models, m) {
			pg.Skipped = append(pg.Skipped, skip{m, skipped[m]})
		}
	}
	for _, w := range res.Meta.Workloads {
		f := figureFor(w)
		wv := workloadView{Info: w, Figure: f.name + " (" + f.unit + ")", FigureCol: f.name != "msgs/s", Success: successFor(res, w), Requests: requestsText(w)}
		for _, c := range charts {
			if strings.HasPrefix(c.SVG, w.Name+"-") {
				wv.Charts = append(wv.Charts, c)
			}
		}
		for _, c := range res.Cells {
			if c.Workload == w.Name {
				wv.Rows = append(wv.Rows, rowFor(c, f))
			}
		}
		pg.Workloads = append(pg.Workloads, wv)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	return closeAfter(f, t.Execute(f, pg))
}

// successFor returns a workload's success map, or nil when its grid has a
// single cell per model (the served column says it all).
func successFor(res *benchgrid.Results, w benchgrid.WorkloadInfo) *successMap {
	if len(w.Clients)*len(w.Backlogs) < 2 {
		return nil
	}
	sm := &successMap{}
	for _, b := range w.Backlogs {
		for _, n := range w.Clients {
			sm.Columns = append(sm.Columns, fmt.Sprintf("backlog %d, %d clients", b, n))
		}
	}
	for _, m := range res.Meta.Models {
		row := successRow{Model: m}
		for _, b := range w.Backlogs {
			for _, n := range w.Clients {
				row.Cells = append(row.Cells, successCellFor(res, w.Name, m, n, b))
			}
		}
		sm.Rows = append(sm.Rows, row)
	}
	return sm
}

// successCellFor colours a success rate from red (0%) through yellow to
// green (100%); a cell with no result is white and says n/a.
func successCellFor(res *benchgrid.Results, workload, model string, clients, backlog int) successCell {
	var rates []float64
	why := "no cell"
	for _, c := range res.Cells {
		if c.Workload == workload && c.Model == model && c.Clients == clients && c.Backlog == backlog {
			if c.Load == nil {
				why = c.Status + ": " + c.Cause
				continue
			}
			rates = append(rates, c.Load.SuccessRate)
		}
	}
	if len(rates) == 0 {
		return successCell{Title: why}
	}
	slices.Sort(rates)
	r := rates[len(rates)/2]
	return successCell{
		Text:  Percent(r),
		Style: fmt.Sprintf("background: hsl(%.0f, %.0f%%, %.0f%%)", 120*r, 70-20*r, 55+5*math.Sin(math.Pi*r)),
		Title: fmt.Sprintf("%s served (median of %d)", Percent(r), len(rates)),
	}
}

// rowFor formats one cell for the cells table.
func rowFor(c benchgrid.Cell, f figure) cellRow {
	r := cellRow{Class: c.Status, Model: c.Model, Clients: fmt.Sprint(c.Clients), Backlog: fmt.Sprint(c.Backlog), Round: fmt.Sprint(c.Round + 1)}
	l := c.Load
	if c.Status != benchgrid.StatusOK {
		r.Flags = append(r.Flags, c.Status)
	}
	if l == nil {
		r.Status = c.Cause
		return r
	}
	if c.Cause != "" {
		r.Flags = append(r.Flags, c.Cause)
	}
	if l.ClientSaturated {
		r.Flags = append(r.Flags, "client-bound")
	}
	if l.SuccessRate < SuccessThreshold {
		r.Class += " under"
		r.Flags = append(r.Flags, fmt.Sprintf("under %.0f%%", 100*SuccessThreshold))
	}
	s := c.Server
	r.Served = fmt.Sprintf("%d/%d (%s)", l.OKConns, l.OKConns+l.FailedConns, Percent(l.SuccessRate))
	if v, ok := f.value(c); ok {
		r.Figure = strings.TrimSuffix(f.format(v), " "+f.unit)
	} else {
		r.Figure = "–"
	}
	r.Msgs = human(l.MsgsPerS)
	r.P50, r.P99, r.Max = formatUs(l.Latency.P50), formatUs(l.Latency.P99), formatUs(l.Latency.Max)
	r.CPUMsg = formatUs(s.CPUPerMsgUs)
	r.CPUPct = fmt.Sprintf("%.0f", busy(c))
	r.RSS = formatBytes(float64(s.PeakRSS))
	r.ThrProc = fmt.Sprintf("%d / %d", s.Threads, s.Procs)
	r.Switches = humanCount(s.Voluntary) + " / " + humanCount(s.Involuntary)
	r.Overflows = fmt.Sprintf("%d / %d", l.ListenOverflows, l.ListenDrops)
	r.ClientCPU = fmt.Sprintf("%.0f", l.ClientCPUPct)
	return r
}
