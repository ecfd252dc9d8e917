// Package engine runs a handler.Handler under a chosen concurrency model.
//
// A model is one way of owning sockets: sequentially, a goroutine per
// connection, a thread per connection, a worker pool, a process per
// connection, preforked processes, epoll event loops, or io_uring. Each
// model lives in its own file, registers itself by name, and passes the
// same conformance suite (package conformance), so any handler runs
// unchanged on any model:
//
//	srv, err := engine.Listen("goroutine", echo.New(), engine.Config{Addr: "127.0.0.1:0"})
//	if err != nil { ... }
//	go srv.Serve()
//	...
//	srv.Shutdown(ctx)
package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/serving"
)

// Server is a bound, running (or ready to run) model.
type Server interface {
	// Addr returns the bound listening address.
	Addr() net.Addr
	// Serve accepts and serves connections until Shutdown. It returns nil
	// after a shutdown and an error if serving failed.
	Serve() error
	// Shutdown stops accepting, lets queued writes flush until ctx's
	// deadline (Config.DrainTimeout from now if it has none) or until ctx
	// is cancelled, closes every connection, and waits for the model's
	// goroutines and processes to end. If the drain was cut short it
	// returns an error wrapping ctx's error, or context.DeadlineExceeded
	// when DrainTimeout passed.
	Shutdown(ctx context.Context) error
	// Stats returns the server's counters so far.
	Stats() Stats
}

// Model describes a concurrency model for the registry.
type Model struct {
	// Name is what --model selects.
	Name string
	// Summary is a one-line description.
	Summary string
	// Limits describes the model's caps and what happens past them, in a
	// few words.
	Limits string
	// Options lists the CLI flag names of the Config fields the model
	// reads beyond the common ones (addr, backlog, max-pending, ...).
	Options []string
	// Sequential is set by a model that by design serves one connection
	// at a time. The conformance suite then expects no overlap.
	Sequential bool
	// Concurrency, if set, returns how many connections the model serves
	// at once under cfg, for a model that bounds it (a worker pool); the
	// others wait. Nil means no bound but memory and descriptors. The
	// conformance suite sizes its concurrent cases by it.
	Concurrency func(cfg Config) int
	// New binds the listener(s) and returns a Server ready to Serve. cfg
	// has its defaults filled in and is valid.
	New func(h handler.Handler, cfg Config) (Server, error)
	// TLS is set by a model that serves TLS connections when
	// Config.TLSCert is set. Listen refuses to start a model without it
	// on a TLS config, rather than serve plaintext.
	TLS bool
	// Child is set by a model that re-executes the program (fork,
	// prefork). In a process the model started, Listen calls Child
	// instead of New, with the parent's Config and the socket the child
	// inherited (see Child and docs/architecture.md). f is closed after
	// Child returns.
	Child func(h handler.Handler, cfg Config, f *os.File) (Server, error)
}

var (
	// ErrUnknownModel is returned for a model name nobody registered.
	ErrUnknownModel = errors.New("unknown model")
	// ErrNoTLS is returned by Listen for a TLS config and a model that
	// cannot serve TLS.
	ErrNoTLS = errors.New("model does not support TLS")
	// ErrUnsupported is wrapped by a model's New when this machine cannot
	// run it (for example io_uring disabled by the kernel). The message
	// names the cause.
	ErrUnsupported = errors.New("model not supported here")
)

// registry holds the models. Models add themselves from init functions, so
// it is written only before main runs and read-only afterwards.
var registry = struct {
	sync.RWMutex
	models map[string]Model
}{models: map[string]Model{}}

// Register adds a model. It panics on a duplicate or incomplete
// registration, as those are programming errors found at start-up.
func Register(m Model) {
	if m.Name == "" || m.New == nil || m.Summary == "" {
		panic("engine: Register needs Name, Summary and New")
	}
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.models[m.Name]; dup {
		panic("engine: model " + m.Name + " registered twice")
	}
	registry.models[m.Name] = m
}

// Models returns every registered model, sorted by name.
func Models() []Model {
	registry.RLock()
	defer registry.RUnlock()
	out := make([]Model, 0, len(registry.models))
	for _, m := range registry.models {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Model) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Lookup returns the model called name.
func Lookup(name string) (Model, error) {
	registry.RLock()
	m, ok := registry.models[name]
	registry.RUnlock()
	if !ok {
		names := make([]string, 0)
		for _, m := range Models() {
			names = append(names, m.Name)
		}
		return Model{}, fmt.Errorf("%w %q (have %s)", ErrUnknownModel, name, strings.Join(names, ", "))
	}
	return m, nil
}

// Listen binds a server for h under the named model. Call Serve on the
// result to start serving.
//
// In a process that fork or prefork started (see Child), Listen binds
// nothing: it serves the socket the process inherited, with the parent's
// Config, so a program's ordinary start-up path rebuilds the same server.
func Listen(model string, h handler.Handler, cfg Config) (Server, error) {
	m, err := Lookup(model)
	if err != nil {
		return nil, err
	}
	if srv, child, err := listenInherited(m, h, cfg); child {
		return srv, err
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("model %s: %w", model, err)
	}
	if err := checkTLS(m, &cfg); err != nil {
		return nil, err
	}
	srv, err := m.New(h, cfg)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", model, err)
	}
	return srv, nil
}

// checkTLS refuses a TLS config for a model that cannot serve TLS, and
// loads the certificate for one that can.
func checkTLS(m Model, cfg *Config) error {
	if !cfg.TLS() {
		return nil
	}
	if !m.TLS {
		var can []string
		for _, o := range Models() {
			if o.TLS {
				can = append(can, o.Name)
			}
		}
		return fmt.Errorf("model %s: %w; TLS works on %s", m.Name, ErrNoTLS, strings.Join(can, ", "))
	}
	if err := serving.LoadTLS(cfg); err != nil {
		return fmt.Errorf("model %s: %w", m.Name, err)
	}
	return nil
}
