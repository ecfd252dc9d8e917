package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tcplab/tcplab/benchgrid"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/internal/cpupin"
	"github.com/tcplab/tcplab/internal/english"
	"github.com/tcplab/tcplab/load"
	"github.com/tcplab/tcplab/report"
)

const (
	seedDuration = 2 * time.Second
	// seedRate keeps the seed grid's fan-out (rate x clients deliveries
	// per second, 40,000 at 400 clients) within what 2 cores can carry.
	seedRate        = 100
	defaultBenchOut = "tcplab-report"
)

// benchOptions holds the bench command's flags.
type benchOptions struct {
	models    string
	workloads string
	app       string
	clients   []int
	backlogs  []int
	out       string
	quick     bool
	full      bool
	seed      bool
	repeat    int
	pin       string
	cfg       load.Config
}

func newBenchCmd() *cobra.Command { return newBenchCmdWith(&benchOptions{}) }

// newBenchCmdWith returns the bench command writing its flags to o.
func newBenchCmdWith(o *benchOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Run every workload on every model, and say which model wins which workload",
		Long: `Run named workloads on every model and write an offline report to --out:
index.html (opening with the verdict: which model for which workload, and
why), results.json, results.csv, summary.md and charts.

Workloads (--workload, default all): ` + strings.Join(benchgrid.WorkloadNames(), ", ") + `.
Each cell starts "tcplab serve" as its own process, waits until it answers,
runs the load, and records success rate, throughput, latency, the server's
CPU time per message (child processes included), RSS, threads, context
switches, and the kernel's ListenOverflows and ListenDrops.

Presets: quick (the default: a small size of every workload, a few minutes
on 2 cores), --full (about ten times longer), --seed-grid (the seed
experiment's chat grid: backlog linspace(10, 300, 10) x clients
linspace(50, 400, 10)). Only a grid axis (--clients, --backlog) leaves the
preset's grid; --out, --pin, --duration, --models, --workload and the load
flags keep it.`,
		Example: `  tcplab bench
  tcplab bench --workload echo,idle --models goroutine,reactor
  tcplab bench --workload echo --clients 50,100,200 --backlog 10,100 --duration 3s
  tcplab bench --seed-grid --models goroutine
  tcplab bench --quick --pin 0:1 --repeat 3`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	f := cmd.Flags()
	f.StringVar(&o.models, "models", "all", "comma-separated models, or all (see tcplab models)")
	f.StringVar(&o.workloads, "workload", "all", "comma-separated workloads, or all: "+strings.Join(benchgrid.WorkloadNames(), ", "))
	f.StringVar(&o.app, "app", "", "run the one workload of this app: echo or chat (same as --workload echo or chat)")
	f.IntSliceVar(&o.clients, "clients", nil, "client counts (concurrent connections) for every workload; leaves the preset's grid")
	f.IntSliceVar(&o.backlogs, "backlog", nil, "listen backlogs for every workload; leaves the preset's grid")
	f.DurationVar(&o.cfg.Duration, "duration", 0, "load per cell (default: the preset's, 1s quick, 3s full)")
	f.StringVar(&o.out, "out", defaultBenchOut, "directory for the report")
	f.BoolVar(&o.quick, "quick", false, "the quick preset (the default): every workload small, 1 s per cell")
	f.BoolVar(&o.full, "full", false, "the full preset: larger grids, 3 s per cell, about ten times longer")
	f.BoolVar(&o.seed, "seed-grid", false, "the seed's grid on chat: backlog linspace(10,300,10) x clients linspace(50,400,10)")
	f.IntVar(&o.repeat, "repeat", 1, "run every cell this many times, to measure the run-to-run noise")
	f.StringVar(&o.pin, "pin", "", "SERVER_CPUS:CLIENT_CPUS, e.g. 0:1 or 0-1:2-3 (sched_setaffinity)")
	f.DurationVar(&o.cfg.ConnectTimeout, "connect-timeout", 0, "time for a connection's first round trip (default: the workload's)")
	f.IntVar(&o.cfg.Size, "size", 0, "message size in bytes; clients x size at most 512 MiB (default 64)")
	f.Float64Var(&o.cfg.Rate, "rate", 0, "total messages per second per cell; 0 is closed loop (default: the workload's)")
	f.IntVar(&o.cfg.PerConn, "per-conn", 0, "echo: messages per connection before reconnecting; 0 keeps connections")
	f.IntVar(&o.cfg.Senders, "senders", 0, "chat: posting connections per cell (default min(clients, 10))")
	return cmd
}

// options turns the flags into a grid, or a usage error.
func (o *benchOptions) options(cmd *cobra.Command) (benchgrid.Options, error) {
	fail := func(err error) (benchgrid.Options, error) { return benchgrid.Options{}, usageError{err} }
	f := cmd.Flags()
	changed := func(name string) bool { return f.Changed(name) }
	presets := 0
	for _, b := range []bool{o.quick, o.full, o.seed} {
		if b {
			presets++
		}
	}
	if presets > 1 {
		return fail(errors.New("--quick, --full and --seed-grid are different grids; pick one"))
	}
	if o.repeat < 1 {
		return fail(fmt.Errorf("--repeat %d: must be at least 1", o.repeat))
	}
	size, preset := benchgrid.Quick, "quick"
	if o.full {
		size, preset = benchgrid.Full, "full"
	}
	names := o.workloads
	if changed("app") {
		if changed("workload") {
			return fail(errors.New("--app picks the workload of that app; give --app or --workload, not both"))
		}
		if o.app != load.AppEcho && o.app != load.AppChat {
			return fail(fmt.Errorf("--app %q: want echo or chat", o.app))
		}
		names = o.app
	}
	if o.seed {
		preset, size = "seed", benchgrid.Full
		if changed("workload") && names != load.AppChat || changed("app") && o.app != load.AppChat {
			return fail(errors.New("--seed-grid runs the chat app; drop --app and --workload"))
		}
		names = load.AppChat
	}
	var workloads []benchgrid.Workload
	list := benchgrid.WorkloadNames()
	if names != "all" {
		list = nil
		for name := range strings.SplitSeq(names, ",") {
			list = append(list, strings.TrimSpace(name))
		}
	}
	for _, name := range list {
		w, err := benchgrid.NamedWorkload(name, size)
		if err != nil {
			return fail(fmt.Errorf("--workload: %w", err))
		}
		if slices.ContainsFunc(workloads, func(x benchgrid.Workload) bool { return x.Name == name }) {
			return fail(fmt.Errorf("--workload: %q twice", name))
		}
		if o.seed {
			w.About = "the seed experiment's grid: 10 members post 100 messages/s in all, the server's default limits"
			w.Clients, w.Backlogs, w.ServeArgs = benchgrid.SeedClients(), benchgrid.SeedBacklogs(), nil
			w.Load.Duration, w.Load.Rate = seedDuration, seedRate
		}
		workloads = append(workloads, w)
	}
	// Only a grid axis leaves the preset's grid.
	if changed("clients") || changed("backlog") {
		preset = "custom grid (" + preset + " settings)"
	}
	chat := false
	for i := range workloads {
		w := &workloads[i]
		if changed("clients") {
			w.Clients = o.clients
		}
		if changed("backlog") {
			w.Backlogs = o.backlogs
		}
		for name, set := range map[string]func(){
			"duration":        func() { w.Load.Duration = o.cfg.Duration },
			"connect-timeout": func() { w.Load.ConnectTimeout = o.cfg.ConnectTimeout },
			"size":            func() { w.Load.Size = o.cfg.Size },
			"rate":            func() { w.Load.Rate = o.cfg.Rate },
			"per-conn":        func() { w.Load.PerConn = o.cfg.PerConn },
			"senders":         func() { w.Load.Senders = o.cfg.Senders },
		} {
			if changed(name) {
				set()
			}
		}
		if err := checkWorkload(w); err != nil {
			return benchgrid.Options{}, err
		}
		chat = chat || w.App == load.AppChat
	}
	if !chat {
		if err := chatOnly(cmd, "senders"); err != nil {
			return benchgrid.Options{}, err
		}
	}
	models, err := pickModels(o.models)
	if err != nil {
		return fail(err)
	}
	exe, err := os.Executable()
	if err != nil {
		return benchgrid.Options{}, fmt.Errorf("bench: finding the tcplab binary: %w", err)
	}
	opts := benchgrid.Options{
		Exe: exe, Models: models, Workloads: workloads, Repeat: o.repeat,
		Preset: preset, Command: "tcplab " + strings.Join(os.Args[1:], " "),
	}
	if o.pin != "" {
		if opts.ServerCPUs, opts.ClientCPUs, err = parsePin(o.pin); err != nil {
			return fail(err)
		}
	}
	if o.out == "" {
		return fail(errors.New("--out: give a directory"))
	}
	return opts, nil
}

// checkWorkload checks every cell of w can run, in bench's own terms.
func checkWorkload(w *benchgrid.Workload) error {
	for _, n := range append(slices.Clone(w.Clients), w.Backlogs...) {
		if n < 1 {
			return usageError{fmt.Errorf("--clients and --backlog values must be at least 1, got %d", n)}
		}
	}
	// --senders must fit the smallest cell.
	if s, n := w.Load.Senders, slices.Min(w.Clients); w.App == load.AppChat && (s < 0 || s > n) {
		return usageError{fmt.Errorf("--senders %d: must be 1 to the smallest --clients (%d), or 0 for min(clients, 10)", s, n)}
	}
	// Every cell must be valid: Senders must fit the smallest, the
	// buffers the largest. The sha rounds of a CPU workload are sized when
	// it runs; any size checks the rest.
	for _, n := range []int{slices.Min(w.Clients), slices.Max(w.Clients)} {
		cfg := w.CellLoad(n, time.Microsecond)
		cfg.Addr = load.DefaultAddr // each cell sets its own address
		if cfg.Size == 0 {
			cfg.Size = load.DefaultSize
		}
		if _, err := typedConfig(cfg); err != nil {
			return fmt.Errorf("workload %s: %w", w.Name, err)
		}
	}
	return nil
}

// pickModels resolves --models against the registry.
func pickModels(s string) ([]string, error) {
	if s == "all" {
		var names []string
		for _, m := range engine.Models() {
			names = append(names, m.Name)
		}
		return names, nil
	}
	var names []string
	for name := range strings.SplitSeq(s, ",") {
		name = strings.TrimSpace(name)
		if _, err := engine.Lookup(name); err != nil {
			return nil, fmt.Errorf("--models: %w", err)
		}
		names = append(names, name)
	}
	return names, nil
}

// parsePin parses SERVER_CPUS:CLIENT_CPUS and checks the CPUs are online.
func parsePin(s string) (server, client []int, err error) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return nil, nil, fmt.Errorf("--pin %q: want SERVER_CPUS:CLIENT_CPUS, e.g. 0:1", s)
	}
	if server, err = cpupin.ParseList(a); err != nil {
		return nil, nil, fmt.Errorf("--pin server: %w", err)
	}
	if client, err = cpupin.ParseList(b); err != nil {
		return nil, nil, fmt.Errorf("--pin client: %w", err)
	}
	if err := cpupin.Check(append(append([]int{}, server...), client...)); err != nil {
		return nil, nil, fmt.Errorf("--pin %q: %w", s, err)
	}
	return server, client, nil
}

func (o *benchOptions) run(cmd *cobra.Command) error {
	opts, err := o.options(cmd)
	if err != nil {
		return err
	}
	// Check the report can be written before minutes of work, not after.
	if err := checkOutDir(o.out); err != nil {
		return usageError{err}
	}
	stderr := cmd.ErrOrStderr()
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cells := len(opts.Plan())
	fmt.Fprintf(stderr, "bench: %s; report in %s\n", describeGrid(opts, cells), o.out)
	bar := newLiveBar(stderr, "bench", int64(cells))
	opts.Progress = func(done, total int, c *benchgrid.Cell) {
		if bar != nil {
			bar.update(int64(done), fmt.Sprintf("%s %s clients=%d backlog=%d", c.Workload, c.Model, c.Clients, c.Backlog))
		} else if c.Status != "" {
			fmt.Fprintf(stderr, "bench: [%d/%d] %s\n", done, total, cellLine(c))
		}
	}
	res, runErr := benchgrid.Run(ctx, opts)
	bar.finish(runErr == nil)
	if res == nil {
		return usageError{runErr}
	}
	files, err := report.Write(o.out, res)
	printBenchSummary(cmd.OutOrStdout(), res, files)
	report.WriteMatrix(cmd.OutOrStdout(), res, report.Verdicts(res))
	if err != nil {
		return err
	}
	if runErr != nil {
		return fmt.Errorf("bench interrupted; the report has the %s that ran", english.Count(len(res.Cells), "cell"))
	}
	return nil
}

// describeGrid says, before the run, which preset and grid it is.
func describeGrid(opts benchgrid.Options, cells int) string {
	var ws []string
	for _, w := range opts.Workloads {
		cfg := w.Load.WithDefaults()
		ws = append(ws, fmt.Sprintf("%s (clients %s x backlogs %s, %v)", w.Name, ints(w.Clients), ints(w.Backlogs), cfg.Duration))
	}
	rounds := ""
	if opts.Repeat > 1 {
		rounds = fmt.Sprintf(", %d rounds", opts.Repeat)
	}
	preset := opts.Preset
	if !strings.HasPrefix(preset, "custom") {
		preset += " preset"
	}
	return fmt.Sprintf("%s: %s: %s x workloads %s%s",
		preset, english.Count(cells, "cell"), english.Count(len(opts.Models), "model"), strings.Join(ws, ", "), rounds)
}

// ints formats 20,200.
func ints(v []int) string {
	return strings.Trim(strings.ReplaceAll(fmt.Sprint(v), " ", ","), "[]")
}

// checkOutDir creates dir if needed and checks a file can be created in
// it.
func checkOutDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--out %s: cannot create the report directory: %w", dir, unwrapPath(err))
	}
	f, err := os.CreateTemp(dir, ".tcplab-write-check-*")
	if err != nil {
		return fmt.Errorf("--out %s: cannot write the report there: %w", dir, unwrapPath(err))
	}
	f.Close()
	if err := os.Remove(f.Name()); err != nil {
		return fmt.Errorf("--out %s: %w", dir, err)
	}
	return nil
}

// unwrapPath drops a *fs.PathError's operation and path, which the
// caller's message already names, keeping its cause.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// cellLine describes a finished cell in one line.
func cellLine(c *benchgrid.Cell) string {
	head := fmt.Sprintf("%s %s clients=%d backlog=%d", c.Workload, c.Model, c.Clients, c.Backlog)
	if c.Status != benchgrid.StatusOK || c.Load == nil {
		return head + ": " + c.Status + ": " + c.Cause
	}
	l := c.Load
	return fmt.Sprintf("%s: success %s, %.0f msgs/s, p99 %.0fus, server %.2fus CPU/msg, ListenOverflows +%d",
		head, report.Percent(l.SuccessRate), l.MsgsPerS, l.Latency.P99, c.Server.CPUPerMsgUs, l.ListenOverflows)
}

func printBenchSummary(w io.Writer, res *benchgrid.Results, files []string) {
	ok := 0
	for _, c := range res.Cells {
		if c.Status == benchgrid.StatusOK {
			ok++
		}
	}
	fmt.Fprintf(w, "bench: %d of %s ok in %.0fs\n", ok, english.Count(len(res.Cells), "cell"), res.Meta.Seconds)
	skipped := res.Skipped()
	for _, m := range slices.Sorted(maps.Keys(skipped)) {
		fmt.Fprintf(w, "skipped %s: %s\n", m, skipped[m])
	}
	for _, f := range files {
		if filepath.Base(f) == report.HTMLFile {
			fmt.Fprintf(w, "report: %s (with %s, %s, %s and %s beside it)\n", f, report.JSONFile, report.CSVFile, report.SummaryFile, english.Count((len(files)-4)/2, "chart"))
		}
	}
	fmt.Fprintln(w)
}
