package benchgrid

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tcplab/tcplab/load"
)

// Size is a preset's size: Quick fits every workload on every model in a
// few minutes on 2 cores; Full is about ten times longer.
type Size int

// Sizes.
const (
	Quick Size = iota
	Full
)

// String names the size as the report does.
func (s Size) String() string {
	if s == Full {
		return "full"
	}
	return "quick"
}

// namedWorkload is a workload's definition at both sizes.
type namedWorkload struct {
	name, app, about string
	// clients and backlogs per size, and the cell's duration.
	clients, backlogs [2][]int
	duration          [2]time.Duration
	// connectTimeout is each connection's time for its first round trip.
	connectTimeout time.Duration
	// load sets the workload's own load fields.
	load      func(*load.Config)
	serveArgs []string
	// ratePerClient, if set, makes the load open loop at this many
	// requests a second per client of the size's largest cell (Rate is
	// the total).
	ratePerClient float64
	// cpu, heavyCPU and heavyShare are Workload's CPU, HeavyCPU and
	// HeavyShare.
	cpu, heavyCPU time.Duration
	heavyShare    float64
	// variants are Workload's Variants: extra columns, such as
	// {Name: "reactor+offload", Model: "reactor", Args: []string{"--offload"}}.
	variants []Variant
}

// chatRate is the chat workload's total posting rate, per second: with
// the server's rate limit off, enough to make fan-out cost something
// (each message goes to every other member) while 2 cores still carry it.
const chatRate = 10000

// The work workloads' requests (docs/work-protocol.md).
const (
	// cpuCost is what each request of cpu costs in CPU time.
	cpuCost = 100 * time.Microsecond
	// blockingSleep is how long each request of blocking blocks its
	// handler, as a synchronous call (a database query) would.
	blockingSleep = 5 * time.Millisecond
	// greedyCost is what each heavy request of greedy costs in CPU time,
	// greedyShare the share of its clients that send them (at least one),
	// and greedyRate the requests a second of each client: the heavy ones
	// keep a core about half busy (25 x 20 ms), the light ones, 475 a
	// second at 20 clients, give the p99 a few hundred samples a second.
	greedyCost  = 20 * time.Millisecond
	greedyShare = 0.05
	greedyRate  = 25
)

// namedWorkloads are the workloads `tcplab bench --workload` knows, in
// the order `all` runs them.
var namedWorkloads = []namedWorkload{
	{
		name: "echo", app: load.AppEcho,
		about:   "closed-loop echo of 64-byte messages over long-lived connections, all connecting at once",
		clients: [2][]int{{20, 200}, {50, 100, 200, 400}}, backlogs: [2][]int{{16, 256}, {16, 128, 1024}},
		duration: [2]time.Duration{time.Second, 3 * time.Second}, connectTimeout: time.Second,
	},
	{
		name: "cpu", app: load.AppWork,
		about: fmt.Sprintf("closed loop: every request is a \"sha N\" of about %g µs of CPU (N sized on this machine when the run starts)",
			float64(cpuCost)/float64(time.Microsecond)),
		clients: [2][]int{{20}, {50}}, backlogs: [2][]int{{256}, {1024}},
		duration: [2]time.Duration{time.Second, 3 * time.Second}, connectTimeout: time.Second,
		cpu: cpuCost,
	},
	{
		name: "blocking", app: load.AppWork,
		about: fmt.Sprintf("closed loop: every request blocks its handler for %g ms (sleep:%v), as a synchronous call such as a database query would",
			float64(blockingSleep)/float64(time.Millisecond), blockingSleep),
		clients: [2][]int{{20}, {50}}, backlogs: [2][]int{{256}, {1024}},
		duration: [2]time.Duration{time.Second, 3 * time.Second}, connectTimeout: time.Second,
		load: func(c *load.Config) { c.Work = load.WorkSpec{Kind: load.WorkSleep, Sleep: blockingSleep} },
		// The stall and its fix side by side: reactor's loop sleeps in
		// each request; with --offload the sleeps run on its workers.
		variants: []Variant{{Name: "reactor+offload", Model: "reactor", Args: []string{"--offload"}}},
	},
	{
		name: "greedy", app: load.AppWork,
		about: fmt.Sprintf("%.0f%% of the clients (at least one) send a \"sha N\" of about %g ms of CPU (N sized on this machine when "+
			"the run starts), the others an echo", 100*greedyShare, float64(greedyCost)/float64(time.Millisecond)),
		clients: [2][]int{{20}, {40}}, backlogs: [2][]int{{256}, {1024}},
		duration: [2]time.Duration{time.Second, 3 * time.Second}, connectTimeout: time.Second,
		ratePerClient: greedyRate, heavyCPU: greedyCost, heavyShare: greedyShare,
	},
	{
		name: "short", app: load.AppEcho,
		about:   "short-lived connections: each carries one 64-byte echo, then closes and a new one opens (--per-conn 1)",
		clients: [2][]int{{20}, {50}}, backlogs: [2][]int{{256}, {1024}},
		duration: [2]time.Duration{time.Second, 3 * time.Second}, connectTimeout: time.Second,
		load: func(c *load.Config) { c.PerConn = 1 },
	},
	{
		name: "idle", app: load.AppEcho,
		about:   "connections opened and left idle for the cell's duration (server memory measured then), then one echo each",
		clients: [2][]int{{1000}, {5000}}, backlogs: [2][]int{{1024}, {4096}},
		duration: [2]time.Duration{time.Second, 3 * time.Second}, connectTimeout: 2 * time.Second,
		load: func(c *load.Config) { c.Idle = true },
	},
	{
		name: "chat", app: load.AppChat,
		about:   fmt.Sprintf("one chat room: 10 members post %d messages/s in all, each delivered to every other member; the server's rate limit off (--msg-rate 0)", chatRate),
		clients: [2][]int{{50}, {100}}, backlogs: [2][]int{{256}, {1024}},
		duration: [2]time.Duration{time.Second, 3 * time.Second}, connectTimeout: 2 * time.Second,
		load:      func(c *load.Config) { c.Rate = chatRate },
		serveArgs: []string{"--msg-rate", "0"},
	},
}

// WorkloadNames lists the named workloads, in the order `all` runs them.
func WorkloadNames() []string {
	var names []string
	for _, w := range namedWorkloads {
		names = append(names, w.name)
	}
	return names
}

// NamedWorkload returns the named workload at size s.
func NamedWorkload(name string, s Size) (Workload, error) {
	for _, w := range namedWorkloads {
		if w.name != name {
			continue
		}
		cfg := load.Config{Duration: w.duration[s], ConnectTimeout: w.connectTimeout}
		if w.load != nil {
			w.load(&cfg)
		}
		about := w.about
		if w.ratePerClient > 0 {
			n := slices.Max(w.clients[s])
			cfg.Rate = w.ratePerClient * float64(n)
			about = fmt.Sprintf("open loop at %.0f requests/s in all (%g a second per client at %d clients): %s", cfg.Rate, w.ratePerClient, n, about)
		}
		return Workload{
			Name: w.name, App: w.app, About: about,
			Clients: slices.Clone(w.clients[s]), Backlogs: slices.Clone(w.backlogs[s]), Load: cfg, ServeArgs: slices.Clone(w.serveArgs),
			CPU: w.cpu, HeavyCPU: w.heavyCPU, HeavyShare: w.heavyShare, Variants: slices.Clone(w.variants),
		}, nil
	}
	return Workload{}, fmt.Errorf("workload %q: want one of %s, or all", name, strings.Join(WorkloadNames(), ", "))
}
