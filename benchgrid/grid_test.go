package benchgrid

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tcplab/tcplab/load"
)

// TestMain runs the tests, or with fakeServeEnv set a fake server (see
// fakeServe).
func TestMain(m *testing.M) {
	if os.Getenv(fakeServeEnv) == "1" {
		fakeServe()
	}
	goleak.VerifyTestMain(m)
}

// loadConfig is a cell's load for d.
func loadConfig(d time.Duration) load.Config {
	return load.Config{Duration: d, ConnectTimeout: time.Second}
}

func TestSeedGridIsTheSeeds(t *testing.T) {
	// numpy.linspace(10, 300, 10) and (50, 400, 10), rounded.
	if got, want := SeedBacklogs(), []int{10, 42, 74, 107, 139, 171, 203, 236, 268, 300}; !slices.Equal(got, want) {
		t.Errorf("backlogs %v, want %v", got, want)
	}
	if got, want := SeedClients(), []int{50, 89, 128, 167, 206, 244, 283, 322, 361, 400}; !slices.Equal(got, want) {
		t.Errorf("clients %v, want %v", got, want)
	}
	if got := Linspace(7, 9, 1); !slices.Equal(got, []int{7}) {
		t.Errorf("Linspace(7, 9, 1) = %v", got)
	}
}

func TestPlanVisitsEveryCellByModel(t *testing.T) {
	o := Options{Models: []string{"a", "b"}, Repeat: 2, Workloads: []Workload{
		{Name: "w1", App: "echo", Clients: []int{1, 2, 3}, Backlogs: []int{10, 20}},
		{Name: "w2", App: "chat", Clients: []int{5}, Backlogs: []int{7}},
	}}
	cells := o.Plan()
	if len(cells) != 2*(12+2) {
		t.Fatalf("%d cells", len(cells))
	}
	if c := cells[0]; c.Workload != "w1" || c.Model != "a" || c.Backlog != 10 || c.Clients != 1 || c.Round != 0 {
		t.Errorf("first cell %+v", c)
	}
	// Each round visits every model before the next round starts.
	if c := cells[11]; c.Model != "b" || c.Backlog != 20 || c.Clients != 3 || c.Round != 0 {
		t.Errorf("cell 11 %+v", c)
	}
	if c := cells[12]; c.Model != "a" || c.Round != 1 {
		t.Errorf("cell 12 %+v", c)
	}
	if c := cells[len(cells)-1]; c.Workload != "w2" || c.App != "chat" || c.Model != "b" || c.Round != 1 {
		t.Errorf("last cell %+v", c)
	}
}

func TestRunRefusesAnUnusableGrid(t *testing.T) {
	good := func() Options {
		return Options{Exe: "/bin/true", Models: []string{"a"}, Workloads: []Workload{{Name: "w", App: "echo", Clients: []int{1}, Backlogs: []int{1}}}}
	}
	for name, change := range map[string]func(*Options){
		"no exe":       func(o *Options) { o.Exe = "" },
		"no models":    func(o *Options) { o.Models = nil },
		"no workloads": func(o *Options) { o.Workloads = nil },
		"no name":      func(o *Options) { o.Workloads[0].Name = "" },
		"twice":        func(o *Options) { o.Workloads = append(o.Workloads, o.Workloads[0]) },
		"repeat":       func(o *Options) { o.Repeat = -1 },
		"no clients":   func(o *Options) { o.Workloads[0].Clients = nil },
		"zero":         func(o *Options) { o.Workloads[0].Backlogs = []int{0} },
		"bad app":      func(o *Options) { o.Workloads[0].App = "http" },
		"bad load":     func(o *Options) { o.Workloads[0].Load = load.Config{Duration: -time.Second} },
		"bad per-con":  func(o *Options) { o.Workloads[0].App, o.Workloads[0].Load = load.AppChat, load.Config{PerConn: 2} },
	} {
		o := good()
		change(&o)
		if res, err := Run(context.Background(), o); err == nil || res != nil {
			t.Errorf("%s: Run = %v, %v", name, res, err)
		}
	}
}

// TestServerThatCannotStartIsSkipped runs a "server" that prints a
// one-line error and exits, as serve does for a model this machine cannot
// run. Every cell of the model is skipped with that cause, and the server
// is tried once per model, not once per cell.
func TestServerThatCannotStartIsSkipped(t *testing.T) {
	dir := t.TempDir()
	starts := filepath.Join(dir, "starts")
	script := filepath.Join(dir, "serve.sh")
	// $1 is "serve", $5 the model name.
	body := "#!/bin/sh\necho \"$5\" >> " + starts + "\necho 'level=INFO msg=starting' >&2\n" +
		"echo \"tcplab: model $5: model not supported here: test kernel says no\" >&2\nexit 1\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	o := Options{Exe: script, Models: []string{"m1", "m2"}, Workloads: []Workload{{Name: "echo", App: "echo", Clients: []int{1, 2}, Backlogs: []int{5, 6}}}}
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Cells) != 8 {
		t.Fatalf("%d cells, want 8", len(res.Cells))
	}
	for _, c := range res.Cells {
		if c.Status != StatusSkipped || c.Cause != "model "+c.Model+": model not supported here: test kernel says no" {
			t.Errorf("cell %s/%d/%d: %s %q", c.Model, c.Backlog, c.Clients, c.Status, c.Cause)
		}
	}
	if s := res.Skipped(); len(s) != 2 {
		t.Errorf("skipped %v, want both models", s)
	}
	b, err := os.ReadFile(starts)
	if err != nil || string(b) != "m1\nm2\n" {
		t.Errorf("server starts %q (%v), want one per model", b, err)
	}
}

// TestIdleCellMeasuresRSSPerConnection runs an idle workload on the fake
// server: the cell keeps the server's RSS before the load and while the
// connections were idle, and their difference per answered connection.
func TestIdleCellMeasuresRSSPerConnection(t *testing.T) {
	o := Options{
		Exe: os.Args[0], Env: []string{fakeServeEnv + "=1", fakePIDEnv + "=" + filepath.Join(t.TempDir(), "pid")},
		Models: []string{"fake"},
		Workloads: []Workload{{Name: "idle", App: "echo", Clients: []int{40}, Backlogs: []int{64},
			Load: load.Config{Idle: true, Duration: 200 * time.Millisecond, ConnectTimeout: 5 * time.Second}}},
	}
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	c := res.Cells[0]
	if c.Status != StatusOK || c.Load.Mode != "idle" || c.Load.OKConns != 40 {
		t.Fatalf("cell %s %q, load %+v", c.Status, c.Cause, c.Load)
	}
	s := c.Server
	if s.BaseRSS == 0 || s.IdleRSS == 0 || s.RSSPerConn != (float64(s.IdleRSS)-float64(s.BaseRSS))/40 {
		t.Errorf("base RSS %d, idle RSS %d, per connection %.0f", s.BaseRSS, s.IdleRSS, s.RSSPerConn)
	}
	if w := res.Meta.Workload("idle"); w == nil || w.Duration != 0.2 || w.ConnectTimeout != 5 {
		t.Errorf("meta workload %+v", w)
	}
}

// TestWorkWorkloadsSizeTheirRequestsPerCell checks what the work workloads
// send in a cell: cpu's sha rounds from the round's cost, blocking's
// sleep, and greedy's heavy clients, 5% of the cell's and at least one.
func TestWorkWorkloadsSizeTheirRequestsPerCell(t *testing.T) {
	const round = 100 * time.Nanosecond
	for _, size := range []Size{Quick, Full} {
		for _, name := range []string{"cpu", "blocking", "greedy"} {
			w, err := NamedWorkload(name, size)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range []int{1, 20, 40, 100} {
				cfg := w.CellLoad(n, round)
				cfg.Addr = "127.0.0.1:1"
				if err := cfg.WithDefaults().Validate(); err != nil {
					t.Errorf("%s %s, %d clients: %v", size, name, n, err)
				}
				var want load.Config
				switch name {
				case "cpu":
					want = load.Config{Work: load.WorkSpec{Kind: load.WorkSha, Rounds: 1000}}
				case "blocking":
					want = load.Config{Work: load.WorkSpec{Kind: load.WorkSleep, Sleep: 5 * time.Millisecond}}
				case "greedy":
					want = load.Config{Heavy: max(1, n/20), HeavyWork: load.WorkSpec{Kind: load.WorkSha, Rounds: 200_000}}
				}
				if cfg.App != load.AppWork || cfg.Conns != n || cfg.Work != want.Work || cfg.Heavy != want.Heavy || cfg.HeavyWork != want.HeavyWork {
					t.Errorf("%s %s, %d clients: app %s, %d conns, work %v, %d heavy %v", size, name, n, cfg.App, cfg.Conns, cfg.Work, cfg.Heavy, cfg.HeavyWork)
				}
			}
		}
	}
	if g, _ := NamedWorkload("greedy", Quick); g.Load.Rate != 500 || !strings.HasPrefix(g.About, "open loop at 500 requests/s in all (25 a second per client at 20 clients)") {
		t.Errorf("greedy: rate %v, %q", g.Load.Rate, g.About)
	}
}

// TestVariantIsAColumnOfItsWorkload runs a workload with two variants: the
// one whose model is selected is a column of its own, served with its
// extra flags; the other is not run.
func TestVariantIsAColumnOfItsWorkload(t *testing.T) {
	w := Workload{Name: "echo", App: "echo", Clients: []int{2}, Backlogs: []int{8}, Load: loadConfig(100 * time.Millisecond),
		Variants: []Variant{{Name: "fake+x", Model: "fake", Args: []string{"--x", "1"}}, {Name: "other+y", Model: "other", Args: []string{"--y"}}}}
	o := Options{Exe: os.Args[0], Env: []string{fakeServeEnv + "=1", fakePIDEnv + "=" + filepath.Join(t.TempDir(), "pid")},
		Models: []string{"fake"}, Workloads: []Workload{w}}
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Meta.Models, []string{"fake", "fake+x"}) || len(res.Cells) != 2 {
		t.Fatalf("models %v, %d cells", res.Meta.Models, len(res.Cells))
	}
	if c := res.Cells[1]; c.Model != "fake+x" || c.Status != StatusOK || !strings.Contains(c.Serve, " --model fake ") || !strings.HasSuffix(c.Serve, " --x 1") {
		t.Errorf("the variant's cell: %s %s %q, served as %q", c.Model, c.Status, c.Cause, c.Serve)
	}
	if c := res.Cells[0]; strings.Contains(c.Serve, "--x") {
		t.Errorf("the model's own cell is served as %q", c.Serve)
	}
	o.Workloads[0].Variants = []Variant{{Name: "fake", Model: "fake"}}
	if _, err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), `variant "fake"`) {
		t.Errorf("a variant named as a model: %v", err)
	}
}
