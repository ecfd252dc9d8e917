package benchgrid

import (
	"context"
	"os"
	"path/filepath"
	"slices"
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
	o := Options{Models: []string{"a", "b"}, App: "echo", Clients: []int{1, 2, 3}, Backlogs: []int{10, 20}}
	cells := o.Plan()
	if len(cells) != 12 {
		t.Fatalf("%d cells", len(cells))
	}
	if c := cells[0]; c.Model != "a" || c.Backlog != 10 || c.Clients != 1 {
		t.Errorf("first cell %+v", c)
	}
	if c := cells[11]; c.Model != "b" || c.Backlog != 20 || c.Clients != 3 {
		t.Errorf("last cell %+v", c)
	}
}

func TestRunRefusesAnUnusableGrid(t *testing.T) {
	good := Options{Exe: "/bin/true", Models: []string{"a"}, App: "echo", Clients: []int{1}, Backlogs: []int{1}}
	for name, change := range map[string]func(*Options){
		"no exe":      func(o *Options) { o.Exe = "" },
		"no models":   func(o *Options) { o.Models = nil },
		"no clients":  func(o *Options) { o.Clients = nil },
		"zero":        func(o *Options) { o.Backlogs = []int{0} },
		"bad app":     func(o *Options) { o.App = "http" },
		"bad load":    func(o *Options) { o.Load = load.Config{Duration: -time.Second} },
		"bad per-con": func(o *Options) { o.App, o.Load = load.AppChat, load.Config{PerConn: 2} },
	} {
		o := good
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
	o := Options{Exe: script, Models: []string{"m1", "m2"}, App: "echo", Clients: []int{1, 2}, Backlogs: []int{5, 6}}
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
