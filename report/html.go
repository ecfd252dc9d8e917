package report

import (
	"fmt"
	"html/template"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/tcplab/tcplab/benchgrid"
)

// page is what index.html shows.
type page struct {
	Meta    benchgrid.Meta
	Charts  []chart
	Skipped []skip
	Cells   []benchgrid.Cell
	JSON    string
	CSV     string
}

type skip struct{ Model, Cause string }

// The page uses no script, font, style sheet or image from elsewhere: the
// style is inline and every src and href names a file in the directory.
const pageHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>tcplab bench report</title>
<style>
body { font-family: sans-serif; margin: 2em; max-width: 80em; }
table { border-collapse: collapse; font-size: 90%; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
th { background: #eee; }
td.l { text-align: left; }
tr.skipped td, tr.error td { color: #a00; }
figure { display: inline-block; margin: 0.5em; }
figure img { width: 32em; }
dt { font-weight: bold; }
</style>
</head>
<body>
<h1>tcplab bench report</h1>
<p>Raw data: <a href="{{.JSON}}">{{.JSON}}</a>, <a href="{{.CSV}}">{{.CSV}}</a>.</p>
<dl>
<dt>Command</dt><dd><code>{{.Meta.Command}}</code> ({{.Meta.Preset}} grid)</dd>
<dt>Started</dt><dd>{{.Meta.Started.Format "2006-01-02 15:04:05 MST"}}, {{printf "%.0f" .Meta.Seconds}} s in all</dd>
<dt>Machine</dt><dd>{{.Meta.Host}}, Linux {{.Meta.Kernel}}, {{.Meta.CPUs}} CPUs, {{.Meta.GoVersion}}</dd>
<dt>Pinning</dt><dd>{{if .Meta.ServerCPUs}}server on CPUs {{.Meta.ServerCPUs}}, load generator on CPUs {{.Meta.ClientCPUs}}{{else}}none: server and load generator share every CPU{{end}}</dd>
<dt>Grid</dt><dd>app {{.Meta.App}}; models {{join .Meta.Models}}; clients {{ints .Meta.Clients}}; backlogs {{ints .Meta.Backlogs}}; {{.Meta.Duration}} s of load per cell</dd>
</dl>
{{if .Skipped}}<h2>Skipped</h2>
<ul>{{range .Skipped}}<li><b>{{.Model}}</b>: {{.Cause}}</li>{{end}}</ul>{{end}}
<h2>Charts</h2>
{{if not .Charts}}<p>No cell completed, so there is nothing to chart.</p>{{end}}
{{range .Charts}}<figure><a href="{{.PNG}}"><img src="{{.SVG}}" alt="{{.Title}}"></a><figcaption>{{.Title}} (<a href="{{.SVG}}">SVG</a>, <a href="{{.PNG}}">PNG</a>)</figcaption></figure>
{{end}}
<h2>How to read this</h2>
<p>A connection succeeded only if its first application round trip (an echo, or the chat server's HELLO)
completed within the connect timeout. ListenOverflows and ListenDrops are the kernel's counts of connections
a full accept queue dropped, for the whole machine during the cell. Latency is from the time each message was
due (open loop and chat) or sent (closed loop). Server CPU per message is the server process tree's CPU time
divided by the messages completed. A load generator at 90% of a core or more is flagged: the client may have
been the bottleneck. On a machine with few cores, server and client compete unless pinned (--pin).</p>
<h2>Cells</h2>
<table>
<tr><th>model</th><th>clients</th><th>backlog</th><th>status</th><th>ok</th><th>failed</th><th>success</th>
<th>msgs/s</th><th>p50 µs</th><th>p99 µs</th><th>p99.9 µs</th><th>max µs</th>
<th>server CPU s</th><th>CPU µs/msg</th><th>peak RSS MiB</th><th>threads</th><th>procs</th><th>vol. cs</th><th>invol. cs</th>
<th>ListenOverflows</th><th>ListenDrops</th><th>client CPU %</th></tr>
{{range .Cells}}<tr class="{{.Status}}"><td class="l">{{.Model}}</td><td>{{.Clients}}</td><td>{{.Backlog}}</td>
{{if .Load}}<td class="l">{{.Status}}{{if .Cause}}: {{.Cause}}{{end}}</td><td>{{.Load.OKConns}}</td><td>{{.Load.FailedConns}}</td><td>{{printf "%.1f%%" (pct .Load.SuccessRate)}}</td>
<td>{{printf "%.0f" .Load.MsgsPerS}}</td><td>{{printf "%.1f" .Load.Latency.P50}}</td><td>{{printf "%.1f" .Load.Latency.P99}}</td><td>{{printf "%.1f" .Load.Latency.P999}}</td><td>{{printf "%.1f" .Load.Latency.Max}}</td>
<td>{{printf "%.3f" .Server.CPUSeconds}}</td><td>{{printf "%.2f" .Server.CPUPerMsgUs}}</td><td>{{mib .Server.PeakRSS}}</td><td>{{.Server.Threads}}</td><td>{{.Server.Procs}}</td><td>{{.Server.Voluntary}}</td><td>{{.Server.Involuntary}}</td>
<td>{{.Load.ListenOverflows}}</td><td>{{.Load.ListenDrops}}</td><td>{{printf "%.0f" .Load.ClientCPUPct}}{{if .Load.ClientSaturated}} (saturated){{end}}</td>
{{else}}<td class="l" colspan="19">{{.Status}}: {{.Cause}}</td>{{end}}</tr>
{{end}}</table>
</body>
</html>
`

func writeHTML(path string, res *benchgrid.Results, charts []chart) error {
	funcs := template.FuncMap{
		"join": func(s []string) string { return strings.Join(s, ", ") },
		"ints": func(v []int) string { return strings.Trim(fmt.Sprint(v), "[]") },
		"pct":  func(v float64) float64 { return 100 * v },
		"mib":  func(b uint64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) },
	}
	t, err := template.New("page").Funcs(funcs).Parse(pageHTML)
	if err != nil {
		return err
	}
	pg := page{Meta: res.Meta, Charts: charts, Cells: res.Cells, JSON: JSONFile, CSV: CSVFile}
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
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	return closeAfter(f, t.Execute(f, pg))
}
