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
	// App is the protocol: load.AppEcho or load.AppChat.
	App string
	// Clients and Backlogs are the grid's axes.
	Clients, Backlogs []int
	// Load is the template for each cell's load; Addr, App and Conns are
	// set per cell.
	Load load.Config
	// ServerCPUs and ClientCPUs, if set, pin the server processes and this
	// process (which runs the load) with sched_setaffinity.
	ServerCPUs, ClientCPUs []int
	// Preset names the grid for the report: "quick", "seed", "custom".
	Preset string
	// Command is the command line that ran the grid, for the report.
	Command string
	// Progress, if set, is called before each cell starts (cell.Status
	// empty) and after it ends.
	Progress func(done, total int, cell *Cell)
}

// Cell is one grid point's outcome.
type Cell struct {
	Model   string `json:"model"`
	App     string `json:"app"`
	Clients int    `json:"clients"`
	Backlog int    `json:"backlog"`
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
	Started    time.Time `json:"started"`
	Seconds    float64   `json:"seconds"`
	Command    string    `json:"command"`
	Preset     string    `json:"preset"`
	App        string    `json:"app"`
	Models     []string  `json:"models"`
	Clients    []int     `json:"clients"`
	Backlogs   []int     `json:"backlogs"`
	Duration   float64   `json:"duration_s"`
	Host       string    `json:"host"`
	Kernel     string    `json:"kernel"`
	CPUs       int       `json:"cpus"`
	GoVersion  string    `json:"go_version"`
	ServerCPUs string    `json:"server_cpus,omitempty"`
	ClientCPUs string    `json:"client_cpus,omitempty"`
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

// Plan returns the grid's cells in the order Run visits them: by model,
// then backlog, then clients.
func (o *Options) Plan() []Cell {
	var cells []Cell
	for _, m := range o.Models {
		for _, b := range o.Backlogs {
			for _, c := range o.Clients {
				cells = append(cells, Cell{Model: m, App: o.App, Clients: c, Backlog: b})
			}
		}
	}
	return cells
}

func (o *Options) validate() error {
	switch {
	case o.Exe == "":
		return errors.New("benchgrid: no tcplab binary to run")
	case len(o.Models) == 0:
		return errors.New("benchgrid: no models")
	case len(o.Clients) == 0 || len(o.Backlogs) == 0:
		return errors.New("benchgrid: empty grid")
	}
	for _, n := range append(slices.Clone(o.Clients), o.Backlogs...) {
		if n < 1 {
			return fmt.Errorf("benchgrid: grid value %d: must be at least 1", n)
		}
	}
	cfg := o.Load
	// Every cell must be valid: Senders must fit the smallest, the
	// buffers the largest.
	for _, n := range []int{slices.Min(o.Clients), slices.Max(o.Clients)} {
		cfg.App, cfg.Conns, cfg.Addr = o.App, n, "127.0.0.1:1"
		if err := cfg.WithDefaults().Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Run runs every cell and returns the results. It stops early, returning
// what it has with ctx's error, when ctx is cancelled.
func Run(ctx context.Context, o Options) (*Results, error) {
	if err := o.validate(); err != nil {
		return nil, err
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
	skipped := map[string]string{} // model -> cause
	for i := range cells {
		if err := ctx.Err(); err != nil {
			res.Meta.Seconds = time.Since(res.Meta.Started).Seconds()
			return res, err
		}
		c := &cells[i]
		if o.Progress != nil {
			o.Progress(i, len(cells), c)
		}
		if cause, ok := skipped[c.Model]; ok {
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
				skipped[c.Model] = c.Cause
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
		Started: time.Now(), Command: o.Command, Preset: o.Preset, App: o.App,
		Models: o.Models, Clients: o.Clients, Backlogs: o.Backlogs,
		CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
	}
	d := o.Load.Duration
	if d == 0 {
		d = load.DefaultDuration
	}
	m.Duration = d.Seconds()
	m.Host, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if len(o.ServerCPUs) > 0 {
		m.ServerCPUs = cpupin.FormatList(o.ServerCPUs)
	}
	if len(o.ClientCPUs) > 0 {
		m.ClientCPUs = cpupin.FormatList(o.ClientCPUs)
	}
	return m
}
