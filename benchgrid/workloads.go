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
}

// chatRate is the chat workload's total posting rate, per second: with
// the server's rate limit off, enough to make fan-out cost something
// (each message goes to every other member) while 2 cores still carry it.
const chatRate = 10000

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
		return Workload{
			Name: w.name, App: w.app, About: w.about,
			Clients: slices.Clone(w.clients[s]), Backlogs: slices.Clone(w.backlogs[s]), Load: cfg, ServeArgs: slices.Clone(w.serveArgs),
		}, nil
	}
	return Workload{}, fmt.Errorf("workload %q: want one of %s, or all", name, strings.Join(WorkloadNames(), ", "))
}
