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

// The quick grid covers every model in under two minutes on a 2-core
// machine: 4 cells of about 1.5 s each per model.
func quickClients() []int  { return []int{20, 200} }
func quickBacklogs() []int { return []int{16, 256} }

const (
	quickDuration       = time.Second
	quickConnectTimeout = time.Second
	seedDuration        = 2 * time.Second
	// seedRate keeps the seed grid's fan-out (rate x clients deliveries
	// per second, 40,000 at 400 clients) within what 2 cores can carry.
	seedRate        = 100
	defaultBenchOut = "tcplab-report"
)

// benchOptions holds the bench command's flags.
type benchOptions struct {
	models   string
	app      string
	clients  []int
	backlogs []int
	out      string
	quick    bool
	seed     bool
	pin      string
	cfg      load.Config
}

func newBenchCmd() *cobra.Command { return newBenchCmdWith(&benchOptions{}) }

// newBenchCmdWith returns the bench command writing its flags to o.
func newBenchCmdWith(o *benchOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Run the benchmark grid (models x backlogs x clients) and write a report",
		Long: `Run the benchmark grid and write results.json, results.csv and an offline
index.html with charts to --out.

Each cell starts "tcplab serve" as its own process, waits until it answers,
runs the load, and records success rate, throughput, latency, the server's
CPU time per message (child processes included), peak RSS, threads,
context switches, and the kernel's ListenOverflows and ListenDrops.

With no flags (or --quick) it runs a small echo grid over every model and
takes under two minutes on 2 cores. --seed-grid runs the seed experiment's
grid on the chat app: backlog linspace(10, 300, 10) x clients
linspace(50, 400, 10), 100 cells per model.`,
		Example: `  tcplab bench
  tcplab bench --models goroutine,seq --clients 50,100,200 --backlog 10,100 --duration 3s
  tcplab bench --seed-grid --models goroutine
  tcplab bench --quick --pin 0:1`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	f := cmd.Flags()
	f.StringVar(&o.models, "models", "all", "comma-separated models, or all (see tcplab models)")
	f.StringVar(&o.app, "app", load.AppEcho, "protocol: echo or chat")
	f.IntSliceVar(&o.clients, "clients", []int{50, 100, 200, 400}, "client counts (concurrent connections)")
	f.IntSliceVar(&o.backlogs, "backlog", []int{16, 128, 1024}, "listen backlogs")
	f.DurationVar(&o.cfg.Duration, "duration", 3*time.Second, "load per cell")
	f.StringVar(&o.out, "out", defaultBenchOut, "directory for the report")
	f.BoolVar(&o.quick, "quick", false, fmt.Sprintf("small grid: every model, clients %v, backlogs %v, %v per cell", quickClients(), quickBacklogs(), quickDuration))
	f.BoolVar(&o.seed, "seed-grid", false, "the seed's grid on chat: backlog linspace(10,300,10) x clients linspace(50,400,10)")
	f.StringVar(&o.pin, "pin", "", "SERVER_CPUS:CLIENT_CPUS, e.g. 0:1 or 0-1:2-3 (sched_setaffinity)")
	f.DurationVar(&o.cfg.ConnectTimeout, "connect-timeout", load.DefaultConnectTimeout, "time for a connection's first round trip")
	f.IntVar(&o.cfg.Size, "size", load.DefaultSize, "message size in bytes; clients x size at most 512 MiB")
	f.Float64Var(&o.cfg.Rate, "rate", 0, "total messages per second per cell; 0 is closed loop (chat: 50/s per sender)")
	f.IntVar(&o.cfg.PerConn, "per-conn", 0, "echo: messages per connection before reconnecting; 0 keeps connections")
	f.IntVar(&o.cfg.Senders, "senders", 0, "chat: posting connections per cell (default min(clients, 10))")
	return cmd
}

// options turns the flags into a grid, or a usage error.
func (o *benchOptions) options(cmd *cobra.Command) (benchgrid.Options, error) {
	f := cmd.Flags()
	changed := func(name string) bool { return f.Changed(name) }
	if o.quick && o.seed {
		return benchgrid.Options{}, usageError{errors.New("--quick and --seed-grid are different grids; pick one")}
	}
	preset := "custom"
	if o.quick || f.NFlag() == 0 {
		preset = "quick"
		if !changed("clients") {
			o.clients = quickClients()
		}
		if !changed("backlog") {
			o.backlogs = quickBacklogs()
		}
		if !changed("duration") {
			o.cfg.Duration = quickDuration
		}
		if !changed("connect-timeout") {
			o.cfg.ConnectTimeout = quickConnectTimeout
		}
	}
	if o.seed {
		preset = "seed"
		if changed("app") && o.app != load.AppChat {
			return benchgrid.Options{}, usageError{errors.New("--seed-grid runs the chat app; drop --app")}
		}
		o.app = load.AppChat
		if !changed("clients") {
			o.clients = benchgrid.SeedClients()
		}
		if !changed("backlog") {
			o.backlogs = benchgrid.SeedBacklogs()
		}
		if !changed("duration") {
			o.cfg.Duration = seedDuration
		}
		if !changed("rate") {
			o.cfg.Rate = seedRate
		}
	}
	models, err := pickModels(o.models)
	if err != nil {
		return benchgrid.Options{}, usageError{err}
	}
	exe, err := os.Executable()
	if err != nil {
		return benchgrid.Options{}, fmt.Errorf("bench: finding the tcplab binary: %w", err)
	}
	opts := benchgrid.Options{
		Exe: exe, Models: models, App: o.app, Clients: o.clients, Backlogs: o.backlogs,
		Load: o.cfg, Preset: preset, Command: "tcplab " + strings.Join(os.Args[1:], " "),
	}
	if o.pin != "" {
		if opts.ServerCPUs, opts.ClientCPUs, err = parsePin(o.pin); err != nil {
			return benchgrid.Options{}, usageError{err}
		}
	}
	for _, n := range append(append([]int{}, o.clients...), o.backlogs...) {
		if n < 1 {
			return benchgrid.Options{}, usageError{fmt.Errorf("--clients and --backlog values must be at least 1, got %d", n)}
		}
	}
	if o.app != load.AppChat {
		if err := chatOnly(cmd, "senders"); err != nil {
			return benchgrid.Options{}, err
		}
	}
	// --senders must fit the smallest cell (said in bench's own terms).
	cfg := o.cfg
	cfg.App, cfg.Conns, cfg.Addr = o.app, slices.Min(o.clients), load.DefaultAddr // each cell sets its own address
	if o.app == load.AppChat && (cfg.Senders < 0 || cfg.Senders > cfg.Conns) {
		return benchgrid.Options{}, usageError{fmt.Errorf("--senders %d: must be 1 to the smallest --clients (%d), or 0 for min(clients, 10)", cfg.Senders, cfg.Conns)}
	}
	// Every cell must be valid: Senders must fit the smallest, the
	// buffers the largest.
	for _, n := range []int{slices.Min(o.clients), slices.Max(o.clients)} {
		cfg.Conns = n
		if _, err := typedConfig(cfg); err != nil {
			return benchgrid.Options{}, err
		}
	}
	if o.out == "" {
		return benchgrid.Options{}, usageError{errors.New("--out: give a directory")}
	}
	return opts, nil
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
	fmt.Fprintf(stderr, "bench: %s (%s x %s x %s), %s app, %v each; report in %s\n",
		english.Count(cells, "cell"), english.Count(len(opts.Models), "model"), english.Count(len(opts.Backlogs), "backlog"),
		english.Count(len(opts.Clients), "client count"), opts.App, opts.Load.Duration, o.out)
	bar := newLiveBar(stderr, "bench", int64(cells))
	opts.Progress = func(done, total int, c *benchgrid.Cell) {
		if bar != nil {
			bar.update(int64(done), fmt.Sprintf("%s clients=%d backlog=%d", c.Model, c.Clients, c.Backlog))
		} else if c.Status != "" {
			fmt.Fprintf(stderr, "bench: [%d/%d] %s\n", done, total, cellLine(c))
		}
	}
	res, runErr := benchgrid.Run(ctx, opts)
	bar.done()
	if res == nil {
		return usageError{runErr}
	}
	files, err := report.Write(o.out, res)
	printBenchSummary(cmd.OutOrStdout(), res, files)
	if err != nil {
		return err
	}
	if runErr != nil {
		return fmt.Errorf("bench interrupted; the report has the %s that ran", english.Count(len(res.Cells), "cell"))
	}
	return nil
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
	head := fmt.Sprintf("%s clients=%d backlog=%d", c.Model, c.Clients, c.Backlog)
	if c.Status != benchgrid.StatusOK || c.Load == nil {
		return head + ": " + c.Status + ": " + c.Cause
	}
	l := c.Load
	return fmt.Sprintf("%s: success %s, %.0f msgs/s, p99 %.0fus, server %.2fus CPU/msg, ListenOverflows +%d",
		head, percent(l.SuccessRate), l.MsgsPerS, l.Latency.P99, c.Server.CPUPerMsgUs, l.ListenOverflows)
}

// percent formats a rate as a percentage, with a decimal under 10% so a
// small rate (1 client of 200) does not read as none.
func percent(rate float64) string {
	if rate < 0.1 {
		return fmt.Sprintf("%.1f%%", 100*rate)
	}
	return fmt.Sprintf("%.0f%%", 100*rate)
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
			fmt.Fprintf(w, "report: %s (with %s, %s and %s beside it)\n", f, report.JSONFile, report.CSVFile, english.Count((len(files)-3)/2, "chart"))
		}
	}
}
