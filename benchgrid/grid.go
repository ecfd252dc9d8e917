// Package benchgrid runs tcplab's benchmark grid: for each model, backlog
// and client count (a cell), it starts `tcplab serve` as a separate
// process, waits until it answers, drives it with package load, and
// records what the server cost: CPU time per message (from
// /proc/PID/stat, the server's child processes included), peak RSS,
// threads, context switches, and the kernel's ListenOverflows and
// ListenDrops deltas.
//
// A model that cannot run on this machine (serve exits with an error, as
// uring does when the kernel refuses io_uring) or an app a model does not
// serve is kept in the results as skipped, with the server's own one-line
// error as the cause.
package benchgrid

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/tcplab/tcplab/internal/cpupin"
	"github.com/tcplab/tcplab/load"
)

// Options describes a grid.
type Options struct {
	// Exe is the tcplab binary to run as the server, and Env extra
	// environment for it.
	Exe string
	Env []string
	// Models are the model names, in order.
	Models []string
	// Workloads are the loads run on every model, in order.
	Workloads []Workload
	// Repeat runs every cell this many times (0 or 1: once), each round
	// over all the models before the next, so the report can measure the
	// run-to-run noise.
	Repeat int
	// ServerCPUs and ClientCPUs, if set, pin the server processes and this
	// process (which runs the load) with sched_setaffinity.
	ServerCPUs, ClientCPUs []int
	// Preset names the grid for the report: "quick", "full", "seed",
	// "custom".
	Preset string
	// Command is the command line that ran the grid, for the report.
	Command string
	// Progress, if set, is called before each cell starts (cell.Status
	// empty) and after it ends.
	Progress func(done, total int, cell *Cell)
	// ShaRound is what one round of a "sha N" request costs here, which
	// sizes the requests of workloads with a CPU or HeavyCPU. Zero: Run
	// measures it when it starts (load.CalibrateSha), in this process,
	// the same build as the servers.
	ShaRound time.Duration
}

// Workload is a named load that the grid runs on every model: an app, its
// axes (backlogs x clients) and the load of each cell.
type Workload struct {
	// Name names it in the report ("echo", "short", "idle", "chat", ...).
	Name string
	// App is the protocol the servers run and the load speaks:
	// load.AppEcho, load.AppChat or load.AppWork.
	App string
	// About says in a few words what the load does, for the report.
	About string
	// Clients and Backlogs are its axes.
	Clients, Backlogs []int
	// Load is the template for each cell's load; Addr, App and Conns are
	// set per cell.
	Load load.Config
	// ServeArgs are extra arguments for `tcplab serve` (e.g. --msg-rate 0).
	ServeArgs []string
	// CPU and HeavyCPU, for the work app, make every light request (and
	// every heavy one) a "sha N" that costs about that much CPU time: Run
	// sizes N from Options.ShaRound, in place of Load.Work (and
	// Load.HeavyWork).
	CPU, HeavyCPU time.Duration
	// HeavyShare is the share of each cell's clients that send the heavy
	// request (Load.Heavy), at least one when it is not 0.
	HeavyShare float64
	// Variants are columns of this workload only: a model served with
	// extra flags, run wherever its model is selected.
	Variants []Variant
}

// Variant is a model served with extra `tcplab serve` flags, a column of
// its own in the report (e.g. reactor with its handlers offloaded).
type Variant struct {
	// Name names the column ("reactor+offload"); Model is the model it
	// serves with, and Args the extra flags.
	Name, Model string
	Args        []string
}

// CellLoad returns the load of the workload's cell with that many
// clients, sha requests sized for rounds of shaRound each (any positive
// value will do to check a grid): the template Load with App, Conns,
// Heavy and the work specs set. Addr is left to the cell.
func (w *Workload) CellLoad(clients int, shaRound time.Duration) load.Config {
	cfg := w.Load
	cfg.App, cfg.Conns = w.App, clients
	sha := func(d time.Duration) load.WorkSpec {
		return load.WorkSpec{Kind: load.WorkSha, Rounds: ShaRounds(d, shaRound)}
	}
	if w.CPU > 0 {
		cfg.Work = sha(w.CPU)
	}
	if w.HeavyCPU > 0 {
		cfg.HeavyWork = sha(w.HeavyCPU)
	}
	if w.HeavyShare > 0 {
		cfg.Heavy = min(clients, max(1, int(math.Round(w.HeavyShare*float64(clients)))))
	}
	return cfg
}

// ShaRounds is how many sha rounds of round each cost about d (at least
// one).
func ShaRounds(d, round time.Duration) int {
	return max(1, int(math.Round(float64(d)/float64(max(round, 1)))))
}

// columns returns the models and variants the workload runs on: every
// selected model, then each variant whose model is selected.
func (o *Options) columns(w *Workload) []string {
	cols := slices.Clone(o.Models)
	for _, v := range w.Variants {
		if slices.Contains(o.Models, v.Model) {
			cols = append(cols, v.Name)
		}
	}
	return cols
}

// serveModel returns the model a column of w serves with, and its extra
// flags.
func (w *Workload) serveModel(column string) (model string, args []string) {
	for _, v := range w.Variants {
		if v.Name == column {
			return v.Model, v.Args
		}
	}
	return column, nil
}

// Cell is one grid point's outcome.
type Cell struct {
	Workload string `json:"workload"`
	Model    string `json:"model"`
	App      string `json:"app"`
	Clients  int    `json:"clients"`
	Backlog  int    `json:"backlog"`
	// Round counts the cell's repetitions from 0 (Options.Repeat).
	Round int `json:"round,omitempty"`
	// Status is StatusOK, StatusSkipped or StatusError; Cause says why a
	// cell is not ok.
	Status string `json:"status"`
	Cause  string `json:"cause,omitempty"`
	// Serve is the server's command line.
	Serve string `json:"serve"`
	// Load is the load generator's result.
	Load *load.Result `json:"load,omitempty"`
	// Server is what the server process tree cost during the load.
	Server ServerCost `json:"server"`
	// Seconds is the cell's wall time, server start and stop included.
	Seconds float64 `json:"seconds"`
}

// Cell statuses.
const (
	StatusOK      = "ok"
	StatusSkipped = "skipped" // the model or app cannot run here; see Cause
	StatusError   = "error"   // the server started but the cell failed; see Cause
)

// ServerCost is a server process tree's resource use over a cell's load.
type ServerCost struct {
	// CPUSeconds is user plus system time of the server and its child
	// processes; CPUPerMsgUs divides it by the messages completed (echoes,
	// or chat deliveries), in microseconds.
	CPUSeconds  float64 `json:"cpu_s"`
	CPUPerMsgUs float64 `json:"cpu_us_per_msg"`
	// PeakRSS is the largest sum of the processes' VmHWM seen, in bytes.
	PeakRSS uint64 `json:"peak_rss_bytes"`
	// Threads and Procs are the most threads and processes seen at once.
	Threads int `json:"threads"`
	Procs   int `json:"procs"`
	// IdleRSS is the RSS of the process tree while an idle load's
	// connections were idle, BaseRSS before the load; RSSPerConn is the
	// difference per connection the server answered (idle loads only).
	// RSS counts a page shared by several processes once per process.
	IdleRSS    uint64  `json:"idle_rss_bytes,omitempty"`
	BaseRSS    uint64  `json:"base_rss_bytes,omitempty"`
	RSSPerConn float64 `json:"rss_bytes_per_conn,omitempty"`
	// Voluntary and Involuntary are the context switches during the load
	// (of threads alive at its end).
	Voluntary   uint64 `json:"voluntary_switches"`
	Involuntary uint64 `json:"involuntary_switches"`
	// CPUs are the CPUs the server's main thread may run on.
	CPUs string `json:"cpus"`
}

// Results is a whole grid run.
type Results struct {
	Meta  Meta   `json:"meta"`
	Cells []Cell `json:"cells"`
}

// Meta describes where and how the grid ran.
type Meta struct {
	Started    time.Time      `json:"started"`
	Seconds    float64        `json:"seconds"`
	Command    string         `json:"command"`
	Preset     string         `json:"preset"`
	Models     []string       `json:"models"`
	Workloads  []WorkloadInfo `json:"workloads"`
	Repeat     int            `json:"repeat"`
	Host       string         `json:"host"`
	Kernel     string         `json:"kernel"`
	CPUs       int            `json:"cpus"`
	GoVersion  string         `json:"go_version"`
	LoadAvg    string         `json:"loadavg,omitempty"` // /proc/loadavg when the run started
	ServerCPUs string         `json:"server_cpus,omitempty"`
	ClientCPUs string         `json:"client_cpus,omitempty"`

	// ShaRoundNs is one round of a "sha N" request on this machine when
	// the run started, in nanoseconds: what sized the CPU workloads'
	// requests (0 if none ran).
	ShaRoundNs float64 `json:"sha_round_ns,omitempty"`
}

// WorkloadInfo describes a workload in the results.
type WorkloadInfo struct {
	Name     string  `json:"name"`
	App      string  `json:"app"`
	About    string  `json:"about,omitempty"`
	Clients  []int   `json:"clients"`
	Backlogs []int   `json:"backlogs"`
	Duration float64 `json:"duration_s"`
	// ConnectTimeout is each connection's time for its first round trip.
	ConnectTimeout float64 `json:"connect_timeout_s"`
	// Work and HeavyWork are a work workload's light and heavy requests
	// (load.WorkSpec), HeavyShare the share of each cell's clients that
	// send the heavy one; WorkCPUUs and HeavyCPUUs are the CPU time their
	// sha rounds cost when the run sized them, in microseconds (0 when the
	// request is not a sized sha).
	Work       string  `json:"work,omitempty"`
	HeavyWork  string  `json:"heavy_work,omitempty"`
	HeavyShare float64 `json:"heavy_share,omitempty"`
	WorkCPUUs  float64 `json:"work_cpu_us,omitempty"`
	HeavyCPUUs float64 `json:"heavy_cpu_us,omitempty"`
}

// Workload returns the named workload's description, or nil.
func (m *Meta) Workload(name string) *WorkloadInfo {
	for i := range m.Workloads {
		if m.Workloads[i].Name == name {
			return &m.Workloads[i]
		}
	}
	return nil
}

// Skipped returns each model that was skipped with its cause.
func (r *Results) Skipped() map[string]string {
	out := map[string]string{}
	for _, c := range r.Cells {
		if c.Status == StatusSkipped {
			out[c.Model] = c.Cause
		}
	}
	return out
}

// Linspace returns n integers evenly spaced from lo to hi, rounded, like
// numpy.linspace(lo, hi, n).astype(int) but rounding to nearest.
func Linspace(lo, hi, n int) []int {
	if n == 1 {
		return []int{lo}
	}
	out := make([]int, n)
	for i := range n {
		out[i] = int(math.Round(float64(lo) + float64(hi-lo)*float64(i)/float64(n-1)))
	}
	return out
}

// SeedBacklogs is the seed experiment's backlog axis, linspace(10, 300, 10).
func SeedBacklogs() []int { return Linspace(10, 300, 10) }

// SeedClients is the seed experiment's clients axis, linspace(50, 400, 10).
func SeedClients() []int { return Linspace(50, 400, 10) }

// Plan returns the grid's cells in the order Run visits them: by
// workload, then round, then model, backlog and clients.
func (o *Options) Plan() []Cell {
	var cells []Cell
	for _, w := range o.Workloads {
		for round := range max(1, o.Repeat) {
			for _, m := range o.columns(&w) {
				for _, b := range w.Backlogs {
					for _, c := range w.Clients {
						cells = append(cells, Cell{Workload: w.Name, Model: m, App: w.App, Clients: c, Backlog: b, Round: round})
					}
				}
			}
		}
	}
	return cells
}

// workload returns the named workload.
func (o *Options) workload(name string) *Workload {
	for i := range o.Workloads {
		if o.Workloads[i].Name == name {
			return &o.Workloads[i]
		}
	}
	return nil
}

func (o *Options) validate() error {
	switch {
	case o.Exe == "":
		return errors.New("benchgrid: no tcplab binary to run")
	case len(o.Models) == 0:
		return errors.New("benchgrid: no models")
	case len(o.Workloads) == 0:
		return errors.New("benchgrid: no workloads")
	case o.Repeat < 0:
		return fmt.Errorf("benchgrid: repeat %d: must not be negative", o.Repeat)
	}
	seen := map[string]bool{}
	for _, w := range o.Workloads {
		if err := w.validate(o.Models); err != nil {
			return err
		}
		if seen[w.Name] {
			return fmt.Errorf("benchgrid: workload %q twice", w.Name)
		}
		seen[w.Name] = true
	}
	return nil
}

func (w *Workload) validate(models []string) error {
	if w.Name == "" {
		return errors.New("benchgrid: a workload without a name")
	}
	if len(w.Clients) == 0 || len(w.Backlogs) == 0 {
		return fmt.Errorf("benchgrid: workload %s: empty grid", w.Name)
	}
	for _, n := range append(slices.Clone(w.Clients), w.Backlogs...) {
		if n < 1 {
			return fmt.Errorf("benchgrid: workload %s: grid value %d: must be at least 1", w.Name, n)
		}
	}
	if (w.CPU > 0 || w.HeavyCPU > 0 || w.HeavyShare > 0) && w.App != load.AppWork {
		return fmt.Errorf("benchgrid: workload %s: CPU, HeavyCPU and HeavyShare need the work app", w.Name)
	}
	// Every cell must be valid: Senders must fit the smallest, the
	// buffers the largest.
	for _, n := range []int{slices.Min(w.Clients), slices.Max(w.Clients)} {
		cfg := w.CellLoad(n, time.Microsecond)
		cfg.Addr = "127.0.0.1:1"
		if err := cfg.WithDefaults().Validate(); err != nil {
			return fmt.Errorf("workload %s: %w", w.Name, err)
		}
	}
	names := slices.Clone(models)
	for _, v := range w.Variants {
		if v.Name == "" || slices.Contains(names, v.Name) {
			return fmt.Errorf("benchgrid: workload %s: variant %q: needs a name no model or other variant has", w.Name, v.Name)
		}
		names = append(names, v.Name)
	}
	return nil
}

// Run runs every cell and returns the results. It stops early, returning
// what it has with ctx's error, when ctx is cancelled.
func Run(ctx context.Context, o Options) (*Results, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.ShaRound == 0 && slices.ContainsFunc(o.Workloads, func(w Workload) bool { return w.CPU > 0 || w.HeavyCPU > 0 }) {
		_, o.ShaRound = load.CalibrateSha(0)
	}
	res := &Results{Meta: o.meta()}
	if len(o.ClientCPUs) > 0 {
		old, err := cpupin.Affinity(os.Getpid())
		if err != nil {
			return nil, err
		}
		if err := cpupin.PinSelf(o.ClientCPUs); err != nil {
			return nil, err
		}
		defer cpupin.PinSelf(old)
	}
	cells := o.Plan()
	skipped := map[[2]string]string{} // workload and model -> cause
	for i := range cells {
		if err := ctx.Err(); err != nil {
			res.Meta.Seconds = time.Since(res.Meta.Started).Seconds()
			return res, err
		}
		c := &cells[i]
		if o.Progress != nil {
			o.Progress(i, len(cells), c)
		}
		if cause, ok := skipped[[2]string{c.Workload, c.Model}]; ok {
			c.Status, c.Cause = StatusSkipped, cause
		} else {
			o.runCell(ctx, c)
			// An interruption (Ctrl-C reaches the servers too) explains
			// whatever went wrong in the cell; only a load that ran to its
			// end before it keeps its status.
			if ctx.Err() != nil && (c.Status != StatusOK || c.Load == nil || c.Load.Interrupted) {
				c.Status, c.Cause = StatusError, "interrupted: the load was cut short"
			}
			if c.Status == StatusSkipped {
				skipped[[2]string{c.Workload, c.Model}] = c.Cause
			}
		}
		res.Cells = append(res.Cells, *c)
		if o.Progress != nil {
			o.Progress(i+1, len(cells), c)
		}
	}
	res.Meta.Seconds = time.Since(res.Meta.Started).Seconds()
	return res, ctx.Err()
}

func (o *Options) meta() Meta {
	m := Meta{
		Started: time.Now(), Command: o.Command, Preset: o.Preset, Models: slices.Clone(o.Models), Repeat: max(1, o.Repeat),
		CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
	}
	if o.ShaRound > 0 {
		m.ShaRoundNs = float64(o.ShaRound.Nanoseconds())
	}
	for _, w := range o.Workloads {
		for _, col := range o.columns(&w) {
			if !slices.Contains(m.Models, col) {
				m.Models = append(m.Models, col)
			}
		}
		cfg := w.CellLoad(slices.Max(w.Clients), o.ShaRound).WithDefaults()
		info := WorkloadInfo{
			Name: w.Name, App: w.App, About: w.About, Clients: w.Clients, Backlogs: w.Backlogs,
			Duration: cfg.Duration.Seconds(), ConnectTimeout: cfg.ConnectTimeout.Seconds(), HeavyShare: w.HeavyShare,
		}
		cost := func(spec load.WorkSpec) float64 {
			return float64(spec.Rounds) * float64(o.ShaRound) / float64(time.Microsecond)
		}
		if w.App == load.AppWork {
			info.Work = cfg.Work.String()
			if w.CPU > 0 {
				info.WorkCPUUs = cost(cfg.Work)
			}
			if cfg.Heavy > 0 {
				info.HeavyWork = cfg.HeavyWork.String()
			}
			if w.HeavyCPU > 0 {
				info.HeavyCPUUs = cost(cfg.HeavyWork)
			}
		}
		m.Workloads = append(m.Workloads, info)
	}
	m.Host, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAvg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	if len(o.ServerCPUs) > 0 {
		m.ServerCPUs = cpupin.FormatList(o.ServerCPUs)
	}
	if len(o.ClientCPUs) > 0 {
		m.ClientCPUs = cpupin.FormatList(o.ClientCPUs)
	}
	return m
}
