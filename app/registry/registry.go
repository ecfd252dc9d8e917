// Package registry is the one list of the apps tcplab serves, and the one
// way to build an app's handler: from its parameters, the values of the
// flags it reads. `tcplab serve` builds with the flags it was given; the
// conformance suite builds with the values a case asks for; and a fork or
// prefork child, the CLI's or a test binary's, rebuilds its parent's
// handler from the same parameters, which the parent passed in
// engine.Config.AppParams (Registry.Child). So there is one child path,
// and the suite tests the one `tcplab serve` takes.
//
// A new app joins by adding its entry to Apps: a name, a summary, the
// flags it reads (with their defaults) and its constructor.
package registry

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tcplab/tcplab/app/echo"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/handler"
)

// App is one protocol tcplab serves.
type App struct {
	// Name is its --app name.
	Name string
	// Summary says what it is, in a few words.
	Summary string
	// Flags defines the parameters the app reads on fs, as flags with
	// their defaults and usage: `tcplab serve` offers each one, and
	// applies it to this app only. nil means none.
	Flags func(fs *pflag.FlagSet)
	// New builds the handler from p. A handler that is an io.Closer is
	// closed after its server has shut down.
	New func(p *Params) (handler.Handler, error)
}

// Params is what an app's New builds from: the values of its flags, and
// the server it will run in.
type Params struct {
	// Model is the concurrency model the handler will run under.
	Model engine.Model
	// Config is the server's engine configuration, defaults filled in.
	Config engine.Config
	// Child is true in a fork or prefork child, which rebuilds its
	// parent's handler: the app joins what the parent set up (the chat,
	// its bus) rather than setting it up again.
	Child bool

	fs *pflag.FlagSet
}

// String, Int, Float64 and Duration return the value of the app's flag
// name. Asking for a flag the app does not define, or as another type,
// is a bug in the app, and panics.
func (p *Params) String(name string) string { return get(p.fs.GetString, name) }

// Int returns the value of the int flag name (see String).
func (p *Params) Int(name string) int { return get(p.fs.GetInt, name) }

// Float64 returns the value of the float64 flag name (see String).
func (p *Params) Float64(name string) float64 { return get(p.fs.GetFloat64, name) }

// Duration returns the value of the duration flag name (see String).
func (p *Params) Duration(name string) time.Duration { return get(p.fs.GetDuration, name) }

// Bool returns the value of the bool flag name (see String).
func (p *Params) Bool(name string) bool { return get(p.fs.GetBool, name) }

func get[T any](f func(string) (T, error), name string) T {
	v, err := f(name)
	if err != nil {
		panic(fmt.Sprintf("registry: app parameter %q: %v", name, err))
	}
	return v
}

// Set changes the value of flag name that the children of a fork or
// prefork server get: what the parent has set up for them (the chat's
// embedded bus becomes its URL).
func (p *Params) Set(name, value string) error {
	if err := p.fs.Set(name, value); err != nil {
		return fmt.Errorf("app parameter %s: %w", name, err)
	}
	return nil
}

// Logger is where the app logs: Config.Logger, or slog.Default().
func (p *Params) Logger() *slog.Logger {
	if p.Config.Logger != nil {
		return p.Config.Logger
	}
	return slog.Default()
}

// values returns every parameter's value by name.
func (p *Params) values() map[string]string {
	m := map[string]string{}
	p.fs.VisitAll(func(f *pflag.Flag) { m[f.Name] = f.Value.String() })
	return m
}

// RuntimeError marks an error that New met acting on valid parameters (a
// bus it cannot reach), as opposed to parameters that are wrong. The CLI
// exits 1 for it and 2 for the others.
type RuntimeError struct{ Err error }

func (e RuntimeError) Error() string { return e.Err.Error() }
func (e RuntimeError) Unwrap() error { return e.Err }

// Registry is a list of apps, by name.
type Registry []App

// Apps returns the apps `tcplab serve --app` offers. A new app adds its
// entry here.
func Apps() Registry {
	return Registry{
		{Name: "echo", Summary: "RFC 862 echo", New: func(*Params) (handler.Handler, error) { return echo.New(), nil }},
		{Name: "chat", Summary: "rooms, nicks and private messages (docs/protocol.md)", Flags: chatFlags, New: newChat},
		{Name: "work", Summary: "requests whose cost the client chooses: sha, sleep, echo (docs/work-protocol.md)", Flags: workFlags, New: newWork},
	}
}

// Lookup returns the app named name.
func (r Registry) Lookup(name string) (App, error) {
	var names []string
	for _, a := range r {
		if a.Name == name {
			return a, nil
		}
		names = append(names, a.Name)
	}
	slices.Sort(names)
	return App{}, fmt.Errorf("unknown app %q (have %s)", name, strings.Join(names, ", "))
}

// FlagSet returns a's flags, with their defaults.
func (a App) FlagSet() *pflag.FlagSet {
	fs := pflag.NewFlagSet(a.Name, pflag.ContinueOnError)
	if a.Flags != nil {
		a.Flags(fs)
	}
	return fs
}

// FlagNames lists the flags a reads.
func (a App) FlagNames() []string {
	var names []string
	a.FlagSet().VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
	return names
}

// params parses values (flag name to value) over a's defaults.
func (a App) params(values map[string]string) (*Params, error) {
	fs := a.FlagSet()
	for _, name := range slices.Sorted(maps.Keys(values)) {
		if fs.Lookup(name) == nil {
			return nil, fmt.Errorf("app %s has no parameter %q (have %s)", a.Name, name, strings.Join(a.FlagNames(), ", "))
		}
		if err := fs.Set(name, values[name]); err != nil {
			return nil, fmt.Errorf("--%s %q: %w", name, values[name], err)
		}
	}
	return &Params{fs: fs}, nil
}

// New builds app name's handler for a server of model configured by cfg,
// from values: its flags' values by name (a flag left out has its
// default). It sets cfg.App to the app's name and cfg.AppParams to every
// parameter's value, from which a fork or prefork child rebuilds the
// handler (Child).
func (r Registry) New(name string, values map[string]string, model engine.Model, cfg *engine.Config) (handler.Handler, error) {
	a, err := r.Lookup(name)
	if err != nil {
		return nil, err
	}
	p, err := a.params(values)
	if err != nil {
		return nil, err
	}
	p.Model, p.Config = model, cfg.WithDefaults()
	h, err := a.New(p)
	if err != nil {
		return nil, err
	}
	cfg.App, cfg.AppParams = a.Name, p.values()
	return h, nil
}

// Child rebuilds, in a process a fork or prefork server started, the
// handler its parent built: the app spec.Config.App, from the parameters
// in spec.Config.AppParams, logging to log.
func (r Registry) Child(spec engine.ChildSpec, log *slog.Logger) (handler.Handler, error) {
	a, err := r.Lookup(spec.Config.App)
	if err != nil {
		return nil, fmt.Errorf("child process: Config.App: %w", err)
	}
	model, err := engine.Lookup(spec.Model)
	if err != nil {
		return nil, fmt.Errorf("child process: %w", err)
	}
	p, err := a.params(spec.Config.AppParams)
	if err != nil {
		return nil, fmt.Errorf("child process: %w", err)
	}
	cfg := spec.Config
	cfg.Logger = log
	p.Model, p.Config, p.Child = model, cfg.WithDefaults(), true
	h, err := a.New(p)
	if err != nil {
		return nil, fmt.Errorf("child process: app %s: %w", a.Name, err)
	}
	return h, nil
}
