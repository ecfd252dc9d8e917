package report

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/tcplab/tcplab/benchgrid"
	"github.com/tcplab/tcplab/internal/english"
)

// SuccessThreshold is the smallest connection success rate of a cell that
// is ranked or charted: a model that served few of its clients has
// numbers from those few, which would read as a good value.
const SuccessThreshold = 0.9

// DefaultNoise is the relative difference under which two models tie
// when the run measured no noise of its own (one round). It is a
// documented default, not this run's measurement: on the 2-core lab VM,
// three rounds of the quick preset while other jobs kept the load average
// near 20 varied by 0 to 139% per model and key cell (median about 40%),
// and quiet ping-pong runs agree within about 5%; 15% is a floor between
// the two. A run with --repeat measures its own (README, "The verdict").
const DefaultNoise = 0.15

// Better values of a figure.
const (
	Higher = "higher"
	Lower  = "lower"
)

// Calls a verdict row makes.
const (
	CallWinner      = "winner"       // Best is ahead of every other ranked model by more than the noise
	CallTie         = "tie"          // Tied are within the noise of Best
	CallClientBound = "client-bound" // Tied saturated the load generator: the client, not they, set the figure
	CallNone        = "none"         // no model was ranked
)

// Verdict is one workload's row of the verdict: its key figure for each
// model, the best, and why.
type Verdict struct {
	Workload string `json:"workload"`
	// Figure names the key figure and the cell it is taken from; Unit is
	// its unit and Better says which way is better.
	Figure string `json:"figure"`
	Unit   string `json:"unit"`
	Better string `json:"better"`
	// Values are the ranked models' figures (the median over rounds).
	Values map[string]float64 `json:"values"`
	// Best is the best of Values by Better ("" when Values is empty).
	Best string `json:"best"`
	// Call is CallWinner, CallTie, CallClientBound or CallNone; Tied lists
	// the models it ties (Best among them).
	Call string   `json:"call"`
	Tied []string `json:"tied,omitempty"`
	// Out lists the models left out of the ranking, with why, and
	// OutShort the gist of it ("served 2/200", "error").
	Out      map[string]string `json:"out,omitempty"`
	OutShort map[string]string `json:"-"`
	// Noise is the relative difference under which two values tie;
	// NoiseFrom says how it was measured.
	Noise     float64 `json:"noise"`
	NoiseFrom string  `json:"noise_from"`
	// ClientBound lists the ranked models whose load generator saturated
	// (for figures the client's speed can limit).
	ClientBound []string `json:"client_bound,omitempty"`
	// Why is the generated sentence.
	Why string `json:"why"`
	// Beside are other figures of each model's key cell, shown beside the
	// key figure (e.g. server CPU per message).
	Beside map[string]string `json:"beside,omitempty"`
	// Clients and Backlog locate the key cell in the workload's grid.
	Clients int `json:"clients"`
	Backlog int `json:"backlog"`
}

// figure is how a workload's key figure is read from a cell.
type figure struct {
	name, unit, better string
	// per names what one load message is ("message", "request",
	// "connection"): the unit of server CPU per message.
	per string
	// value reads the figure; ok false means the cell has none.
	value func(c benchgrid.Cell) (v float64, ok bool)
	// clientBound says the figure depends on the load generator's speed.
	clientBound bool
	// beside formats the figure shown next to it.
	beside func(c benchgrid.Cell) string
	// mechanism, if set, names what explains why a beat b in place of
	// the general mechanism; explain, if set, adds a sentence on what the
	// counters show across the ranked models (best first).
	mechanism func(a, b ranked) string
	explain   func(w benchgrid.WorkloadInfo, ranks []ranked) string
}

// format formats a value of the figure with its unit.
func (f figure) format(v float64) string { return formatValue(f.unit, v) }

// figureFor returns the key figure of a workload: by its name, or for a
// custom grid by its app.
func figureFor(w benchgrid.WorkloadInfo) figure {
	cpu := func(per string) func(c benchgrid.Cell) string {
		return func(c benchgrid.Cell) string {
			return fmt.Sprintf("server CPU %s/%s", formatUs(c.Server.CPUPerMsgUs), per)
		}
	}
	rate := func(c benchgrid.Cell) (float64, bool) { return c.Load.MsgsPerS, c.Load.Msgs > 0 }
	switch {
	case w.Name == "cpu":
		return cpuFigure(cpu("req"))
	case w.Name == "blocking":
		return blockingFigure(cpu("req"))
	case w.Name == "greedy":
		return greedyFigure()
	case w.Name == "short":
		return figure{name: "connections/s (one request each)", unit: "conns/s", better: Higher, per: "connection", clientBound: true,
			value: func(c benchgrid.Cell) (float64, bool) {
				if c.Load.Window <= 0 || c.Load.OKConns == 0 {
					return 0, false
				}
				return float64(c.Load.OKConns) / c.Load.Window, true
			},
			beside: cpu("conn")}
	case w.Name == "idle":
		return figure{name: "RSS per idle connection", unit: "bytes", better: Lower, per: "connection",
			value: func(c benchgrid.Cell) (float64, bool) {
				return c.Server.RSSPerConn, c.Server.RSSPerConn > 0
			},
			beside: func(c benchgrid.Cell) string {
				return fmt.Sprintf("%s, %d %s", english.Count(c.Server.Threads, "thread"), c.Server.Procs, english.Noun(c.Server.Procs, "process", "processes"))
			}}
	case w.App == "chat":
		return figure{name: "delivered msgs/s", unit: "msgs/s", better: Higher, per: "delivery", clientBound: true,
			value: func(c benchgrid.Cell) (float64, bool) {
				return c.Load.DeliveredPerS, c.Load.Delivered > 0
			},
			beside: cpu("delivery")}
	}
	return figure{name: "msgs/s", unit: "msgs/s", better: Higher, per: "message", clientBound: true,
		value: rate, beside: cpu("msg")}
}

// keyCells returns, per model, the ok and not-ok cells at a workload's
// key point: its largest backlog and largest client count, every round.
func keyCells(res *benchgrid.Results, w benchgrid.WorkloadInfo) (clients, backlog int, cells map[string][]benchgrid.Cell) {
	clients, backlog = slices.Max(w.Clients), slices.Max(w.Backlogs)
	cells = map[string][]benchgrid.Cell{}
	for _, c := range res.Cells {
		if c.Workload == w.Name && c.Clients == clients && c.Backlog == backlog {
			cells[c.Model] = append(cells[c.Model], c)
		}
	}
	return clients, backlog, cells
}

// ranked is a model's figure, from the round whose value is the median.
type ranked struct {
	model string
	value float64
	cell  benchgrid.Cell
}

// Verdicts returns one verdict per workload of res, in run order.
func Verdicts(res *benchgrid.Results) []Verdict {
	var out []Verdict
	for _, w := range res.Meta.Workloads {
		out = append(out, verdictFor(res, w))
	}
	return out
}

func verdictFor(res *benchgrid.Results, w benchgrid.WorkloadInfo) Verdict {
	f := figureFor(w)
	clients, backlog, cells := keyCells(res, w)
	v := Verdict{
		Workload: w.Name, Unit: f.unit, Better: f.better, Clients: clients, Backlog: backlog,
		Figure: fmt.Sprintf("%s at %d %s, backlog %d", f.name, clients, english.Noun(clients, "client", "clients"), backlog),
		Values: map[string]float64{}, Out: map[string]string{}, OutShort: map[string]string{}, Beside: map[string]string{},
		Noise: DefaultNoise, NoiseFrom: fmt.Sprintf("the documented default (±%.0f%%; one round measures none)", 100*DefaultNoise),
	}
	var ranks []ranked
	var spreads []float64
	for _, m := range res.Meta.Models {
		cs := cells[m]
		if len(cs) == 0 {
			continue
		}
		var vals []ranked
		var why, short string
		for _, c := range cs {
			r, reason, gist := rankable(c, f)
			if reason != "" {
				why, short = reason, gist
				continue
			}
			vals = append(vals, ranked{m, r, c})
		}
		// A model is ranked only if every round of its key cell was.
		if len(vals) < len(cs) {
			v.Out[m], v.OutShort[m] = why, short
			continue
		}
		slices.SortFunc(vals, func(a, b ranked) int { return cmpFloat(a.value, b.value) })
		med := vals[len(vals)/2]
		if len(vals) > 1 && med.value != 0 {
			spreads = append(spreads, (vals[len(vals)-1].value-vals[0].value)/math.Abs(med.value))
		}
		ranks = append(ranks, med)
		v.Values[m] = med.value
		if f.clientBound && med.cell.Load.ClientSaturated {
			v.ClientBound = append(v.ClientBound, m)
		}
		v.Beside[m] = f.beside(med.cell)
	}
	if len(spreads) > 0 {
		v.Noise = slices.Max(spreads)
		v.NoiseFrom = fmt.Sprintf("measured: the widest spread of one model's %d rounds in this run (±%.0f%%)", res.Meta.Repeat, 100*v.Noise)
		// Measured noise is a floor of the documented one's tenth: two
		// rounds that agree exactly say little.
		v.Noise = max(v.Noise, DefaultNoise/10)
	}
	if len(v.Out) == 0 {
		v.Out, v.OutShort = nil, nil
	}
	slices.SortStableFunc(ranks, func(a, b ranked) int {
		if f.better == Higher {
			return cmpFloat(b.value, a.value)
		}
		return cmpFloat(a.value, b.value)
	})
	v.Call = CallNone
	if len(ranks) > 0 {
		v.Best, v.Call = ranks[0].model, CallWinner
		best := ranks[0]
		if f.clientBound && best.cell.Load.ClientSaturated {
			for _, r := range ranks {
				if r.cell.Load.ClientSaturated {
					v.Tied = append(v.Tied, r.model)
				}
			}
			if len(v.Tied) > 1 {
				v.Call = CallClientBound
			} else {
				v.Tied = nil
			}
		}
		if v.Call == CallWinner {
			for _, r := range ranks {
				if relDiff(r.value, best.value) < v.Noise {
					v.Tied = append(v.Tied, r.model)
				}
			}
			if len(v.Tied) > 1 {
				v.Call = CallTie
			} else {
				v.Tied = nil
			}
		}
	}
	if len(cells) == 0 {
		v.Why = fmt.Sprintf("On %s, no cell ran (the run stopped before it).", w.Name)
		return v
	}
	v.Why = sentence(w, f, v, ranks)
	return v
}

// rankable returns c's figure, or why c is out of the ranking and the
// gist of it.
func rankable(c benchgrid.Cell, f figure) (v float64, why, gist string) {
	switch {
	case c.Status != benchgrid.StatusOK || c.Load == nil:
		return 0, c.Status + ": " + c.Cause, c.Status
	case c.Load.SuccessRate < SuccessThreshold:
		n := c.Load.OKConns + c.Load.FailedConns
		return 0, fmt.Sprintf("served %d of %d clients, %s, under the %.0f%% threshold",
				c.Load.OKConns, n, Percent(c.Load.SuccessRate), 100*SuccessThreshold),
			fmt.Sprintf("served %d/%d", c.Load.OKConns, n)
	}
	v, ok := f.value(c)
	if !ok || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, "no " + f.name + " measured", "no figure"
	}
	return v, "", ""
}

// relDiff is |a-b| relative to the larger magnitude.
func relDiff(a, b float64) float64 {
	m := max(math.Abs(a), math.Abs(b))
	if m == 0 {
		return 0
	}
	return math.Abs(a-b) / m
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// sentence writes the verdict's Why from the run's numbers.
func sentence(w benchgrid.WorkloadInfo, f figure, v Verdict, ranks []ranked) string {
	var b strings.Builder
	fmt.Fprintf(&b, "On %s, ", w.Name)
	switch v.Call {
	case CallNone:
		b.WriteString("no model was ranked")
		if len(v.Out) > 0 {
			fmt.Fprintf(&b, ": %s", outList(v))
		}
		b.WriteString(".")
		return b.String()
	case CallClientBound:
		lo, hi := tiedRange(v, ranks)
		fmt.Fprintf(&b, "%s saturated the load generator (%s) at %s to %s: they are client-bound, a tie on this machine",
			andList(v.Tied), clientCPU(v.Tied, ranks), f.format(lo), f.format(hi))
		b.WriteString(cheapest(f, v.Tied, ranks))
		if next := firstNotIn(ranks, v.Tied); next != nil {
			fmt.Fprintf(&b, "; the best server-bound model is %s at %s", next.model, f.format(next.value))
		}
	case CallTie:
		lo, hi := tiedRange(v, ranks)
		fmt.Fprintf(&b, "%s are within the run-to-run noise (±%.0f%%) of each other at %s to %s: a tie on this machine",
			andList(v.Tied), 100*v.Noise, f.format(lo), f.format(hi))
		b.WriteString(cheapest(f, v.Tied, ranks))
		if next := firstNotIn(ranks, v.Tied); next != nil {
			fmt.Fprintf(&b, "; next is %s at %s", next.model, f.format(next.value))
		}
	case CallWinner:
		best := ranks[0]
		fmt.Fprintf(&b, "%s is best with %s", best.model, f.format(best.value))
		if len(ranks) > 1 {
			r := ranks[1]
			fmt.Fprintf(&b, "; %s is next with %s", r.model, f.format(r.value))
			m := mechanism(f, best, r)
			if f.mechanism != nil {
				m = f.mechanism(best, r)
			}
			if m != "" {
				b.WriteString(", " + m)
			}
		} else {
			b.WriteString(", the only model ranked")
		}
		if f.clientBound && best.cell.Load.ClientSaturated {
			fmt.Fprintf(&b, " (the load generator saturated at %.0f%% of a core: %s may do better with a faster client)", best.cell.Load.ClientCPUPct, best.model)
		}
	}
	if len(v.Out) > 0 {
		fmt.Fprintf(&b, ". Out of the ranking: %s", outList(v))
	}
	b.WriteString(".")
	if f.explain != nil {
		if e := f.explain(w, ranks); e != "" {
			b.WriteString(" " + e)
		}
	}
	return b.String()
}

// mechanism names the server counter that best explains why a beat b, or
// says the counters show none.
func mechanism(f figure, a, b ranked) string {
	ac, bc := a.cell, b.cell
	if f.better == Lower && f.per == "connection" { // idle: memory per connection
		at, bt := ac.Server.Threads, bc.Server.Threads
		ap, bp := ac.Server.Procs, bc.Server.Procs
		if bt > 2*at || bp > 2*ap {
			return fmt.Sprintf("because %s holds them on %s in %s, %s on %s in %s",
				a.model, count(at, "thread"), count(ap, "process"), b.model, count(bt, "thread"), count(bp, "process"))
		}
		return fmt.Sprintf("both on about as many threads (%d and %d in %d and %d processes): the difference is in what each keeps per connection", at, bt, ap, bp)
	}
	if bc.Load.SuccessRate < ac.Load.SuccessRate-0.02 {
		return fmt.Sprintf("because %s served %s of its clients against %s's %s", b.model, Percent(bc.Load.SuccessRate), a.model, Percent(ac.Load.SuccessRate))
	}
	if bc.Server.Procs > 2*max(1, ac.Server.Procs) {
		return fmt.Sprintf("because %s ran up to %s against %s's %d and spent %s of server CPU per %s against %s",
			b.model, count(bc.Server.Procs, "process"), a.model, ac.Server.Procs,
			formatUs(bc.Server.CPUPerMsgUs), f.per, formatUs(ac.Server.CPUPerMsgUs))
	}
	acpu, bcpu := ac.Server.CPUPerMsgUs, bc.Server.CPUPerMsgUs
	if acpu > 0 && bcpu > 1.15*acpu {
		return fmt.Sprintf("because %s spends less server CPU per %s (%s against %s)", a.model, f.per, formatUs(acpu), formatUs(bcpu))
	}
	acs, bcs := switchesPer(ac), switchesPer(bc)
	if acs > 0 && bcs > 1.5*acs && bcs > 0.05 {
		return fmt.Sprintf("because %s's threads switch less per %s (%.2f context switches against %.2f)", a.model, f.per, acs, bcs)
	}
	abusy, bbusy := busy(ac), busy(bc)
	if abusy > 1.5*bbusy && abusy-bbusy > 10 {
		return fmt.Sprintf("because %s kept the CPUs busier (server at %.0f%% of a core against %.0f%%: %s's threads waited)", a.model, abusy, bbusy, b.model)
	}
	return fmt.Sprintf("and the server counters show no cause beyond the noise (server CPU %s against %s per %s)", formatUs(acpu), formatUs(bcpu), f.per)
}

// NoiseLine says how the run-to-run noise under which models tie was
// found, per workload when the run measured it.
func NoiseLine(verdicts []Verdict) string {
	var measured []string
	for _, v := range verdicts {
		if strings.HasPrefix(v.NoiseFrom, "measured") {
			measured = append(measured, fmt.Sprintf("%s ±%.0f%%", v.Workload, 100*v.Noise))
		}
	}
	if len(measured) == 0 {
		return fmt.Sprintf("Two models tie when their figures differ by less than the run-to-run noise: one round measures none, "+
			"so it is the documented default, ±%.0f%% (see the README; --repeat 3 measures it).", 100*DefaultNoise)
	}
	return "Two models tie when their figures differ by less than the run-to-run noise, measured as the widest spread " +
		"of one model's rounds of the key cell: " + strings.Join(measured, ", ") + "."
}

// cheapest names, among tied models, the one that spent the least server
// CPU per message and the one that spent the most: in a tie on the
// figure, that is the cost that still tells them apart.
func cheapest(f figure, tied []string, ranks []ranked) string {
	if f.better == Lower && f.per == "connection" {
		return ""
	}
	var lo, hi *ranked
	for i := range ranks {
		r := &ranks[i]
		if !slices.Contains(tied, r.model) || r.cell.Server.CPUPerMsgUs <= 0 {
			continue
		}
		if lo == nil || r.cell.Server.CPUPerMsgUs < lo.cell.Server.CPUPerMsgUs {
			lo = r
		}
		if hi == nil || r.cell.Server.CPUPerMsgUs > hi.cell.Server.CPUPerMsgUs {
			hi = r
		}
	}
	if lo == nil || hi == lo || hi.cell.Server.CPUPerMsgUs < 1.15*lo.cell.Server.CPUPerMsgUs {
		return ""
	}
	return fmt.Sprintf("; of them %s spent the least server CPU per %s (%s) and %s the most (%s)",
		lo.model, f.per, formatUs(lo.cell.Server.CPUPerMsgUs), hi.model, formatUs(hi.cell.Server.CPUPerMsgUs))
}

// switchesPer is a cell's context switches per message.
func switchesPer(c benchgrid.Cell) float64 {
	if c.Load == nil || c.Load.Msgs == 0 {
		return 0
	}
	return float64(c.Server.Voluntary+c.Server.Involuntary) / float64(c.Load.Msgs)
}

// busy is a cell's server CPU use in percent of one core over the load.
func busy(c benchgrid.Cell) float64 {
	if c.Load == nil || c.Load.Elapsed <= 0 {
		return 0
	}
	return 100 * c.Server.CPUSeconds / c.Load.Elapsed
}

func tiedRange(v Verdict, ranks []ranked) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, r := range ranks {
		if slices.Contains(v.Tied, r.model) {
			lo, hi = min(lo, r.value), max(hi, r.value)
		}
	}
	return lo, hi
}

func clientCPU(models []string, ranks []ranked) string {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range ranks {
		if slices.Contains(models, r.model) {
			lo, hi = min(lo, r.cell.Load.ClientCPUPct), max(hi, r.cell.Load.ClientCPUPct)
		}
	}
	if math.Round(lo) == math.Round(hi) {
		return fmt.Sprintf("%.0f%% of a core", lo)
	}
	return fmt.Sprintf("%.0f–%.0f%% of a core", lo, hi)
}

func firstNotIn(ranks []ranked, models []string) *ranked {
	for i := range ranks {
		if !slices.Contains(models, ranks[i].model) {
			return &ranks[i]
		}
	}
	return nil
}

// andList joins names as "a, b and c".
func andList(names []string) string {
	switch len(names) {
	case 0:
		return ""
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// outList lists the models out of the ranking with their reasons; those
// under the success threshold together.
func outList(v Verdict) string {
	var under, parts []string
	for _, m := range slices.Sorted(maps.Keys(v.Out)) {
		if served, ok := strings.CutPrefix(v.OutShort[m], "served "); ok {
			under = append(under, m+" "+served)
		} else {
			parts = append(parts, m+": "+v.Out[m])
		}
	}
	if len(under) > 0 {
		parts = append([]string{fmt.Sprintf("under the %.0f%% success threshold, %s (clients served)", 100*SuccessThreshold, andList(under))}, parts...)
	}
	return strings.Join(parts, "; ")
}

func count(n int, one string) string {
	many := one + "s"
	if strings.HasSuffix(one, "s") {
		many = one + "es"
	}
	return fmt.Sprintf("%d %s", n, english.Noun(n, one, many))
}

// Percent formats a rate as a percentage, with a decimal under 10% so a
// small rate (1 client of 200 is 0.5%) does not read as none, and never
// rounds a rate under 1 up to 100%.
func Percent(rate float64) string {
	p := 100 * rate
	switch {
	case p < 10:
		return fmt.Sprintf("%.1f%%", p)
	case p < 100 && p >= 99.5:
		return fmt.Sprintf("%.1f%%", math.Floor(p*10)/10)
	}
	return fmt.Sprintf("%.0f%%", p)
}

// human formats a number with 3 significant digits and k or M.
func human(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e6:
		return sig(v/1e6) + "M"
	case a >= 1e3:
		return sig(v/1e3) + "k"
	}
	return sig(v)
}

// humanCount formats a count: exact under 1000, else with k or M.
func humanCount(n uint64) string {
	if n < 1000 {
		return fmt.Sprint(n)
	}
	return human(float64(n))
}

// sig formats v with about three significant digits.
func sig(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// formatUs formats microseconds with a unit that fits.
func formatUs(v float64) string {
	switch {
	case v >= 1e6:
		return sig(v/1e6) + " s"
	case v >= 1e3:
		return sig(v/1e3) + " ms"
	}
	return sig(v) + " µs"
}

// formatBytes formats a byte count in B, KiB or MiB.
func formatBytes(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1<<20:
		return sig(v/(1<<20)) + " MiB"
	case a >= 1<<10:
		return sig(v/(1<<10)) + " KiB"
	}
	return fmt.Sprintf("%.0f B", v)
}

// Format formats a value of the verdict's figure with its unit.
func (v Verdict) Format(x float64) string { return formatValue(v.Unit, x) }

// formatValue formats a figure's value with its unit: bytes in B, KiB or
// MiB, milliseconds as such, rates with k or M.
func formatValue(unit string, x float64) string {
	switch unit {
	case "bytes":
		return formatBytes(x)
	case "ms":
		return sig(x) + " ms"
	}
	return human(x) + " " + unit
}
