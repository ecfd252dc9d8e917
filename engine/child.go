package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/tcplab/tcplab/handler"
)

// The process models (fork, prefork) re-execute the running program. The
// child gets the parent's arguments, so its ordinary start-up path builds
// the same handler and calls Listen again; two things tell it that it is a
// child and what to serve:
//
//   - ChildEnv in its environment: a JSON ChildSpec naming the model and
//     carrying the parent's Config (defaults filled in, no Logger);
//   - file descriptor ChildFD (exec.Cmd.ExtraFiles[0]): the socket to
//     serve, a connection for fork, the listening socket for prefork;
//   - file descriptor ChildStatsFD (ExtraFiles[1]): a pipe the child
//     reports its Stats on (childstats.go).
//
// Listen sees ChildEnv, removes it from the environment (the socket is
// served once, and the child's own children are not the model's), and
// calls the model's Child function on the inherited descriptor instead of
// binding. A test binary re-executes itself the same way; its TestMain
// must route the child to Listen (conformance.Main does).

const (
	// ChildEnv is the environment variable that marks a process started
	// by fork or prefork. Its value is a JSON ChildSpec.
	ChildEnv = "TCPLAB_ENGINE_CHILD"
	// ChildFD is the descriptor a child inherits its socket on.
	ChildFD = 3
)

// ChildSpec tells a process started by fork or prefork what to serve.
type ChildSpec struct {
	// Model is the model that started the process.
	Model string
	// Config is the parent's Config, with defaults filled in. Its Logger
	// is nil: the child logs through its own.
	Config Config
}

// Child reports whether this process was started by fork or prefork, and
// if so returns the spec its parent passed. The error reports a spec that
// cannot be read. A program that serves several handlers can use
// spec.Config.App to build the one its parent served.
func Child() (spec ChildSpec, ok bool, err error) {
	v, ok := os.LookupEnv(ChildEnv)
	if !ok {
		return ChildSpec{}, false, nil
	}
	if err := json.Unmarshal([]byte(v), &spec); err != nil {
		return ChildSpec{}, true, fmt.Errorf("child process: reading %s: %w", ChildEnv, err)
	}
	if spec.Model == "" {
		return ChildSpec{}, true, fmt.Errorf("child process: %s names no model", ChildEnv)
	}
	return spec, true, nil
}

// childEnviron returns the environment of a child of model: this process's
// own, plus the spec.
func childEnviron(model string, cfg Config) ([]string, error) {
	cfg.Logger = nil
	b, err := json.Marshal(ChildSpec{Model: model, Config: cfg})
	if err != nil {
		return nil, fmt.Errorf("encoding the child spec: %w", err)
	}
	env := append(os.Environ(), ChildEnv+"="+string(b))
	if gorace := os.Getenv("GORACE"); raceEnabled && !strings.Contains(gorace, "atexit_sleep_ms") {
		env = append(env, "GORACE="+strings.TrimSpace(gorace+" atexit_sleep_ms=0"))
	}
	return env, nil
}

// errUnservedChild is returned by a process model asked to start children
// from a process that is itself a child but never served its socket: its
// children would do the same, without end.
var errUnservedChild = errors.New("this process is a fork/prefork child that has not served its inherited socket " +
	"(its start-up path must call engine.Listen first; in tests, TestMain must call conformance.Main)")

// checkNotChild refuses to start a process model in an unserved child.
func checkNotChild() error {
	if _, ok := os.LookupEnv(ChildEnv); ok {
		return errUnservedChild
	}
	return nil
}

// listenInherited is Listen in a child process: it serves the inherited
// socket under the parent's Config, with the caller's handler and logger.
// child is false in any other process.
func listenInherited(m Model, h handler.Handler, cfg Config) (srv Server, child bool, err error) {
	spec, child, err := Child()
	if !child {
		return nil, false, nil
	}
	os.Unsetenv(ChildEnv)
	if err != nil {
		return nil, true, err
	}
	if spec.Model != m.Name {
		return nil, true, fmt.Errorf("child process of model %s: Listen asked for model %s", spec.Model, m.Name)
	}
	if m.Child == nil {
		return nil, true, fmt.Errorf("child process: model %s starts no child processes", m.Name)
	}
	c := spec.Config
	c.Logger = cfg.Logger
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return nil, true, fmt.Errorf("child process of model %s: %w", m.Name, err)
	}
	if err := checkTLS(m, &c); err != nil {
		return nil, true, fmt.Errorf("child process: %w", err)
	}
	f := os.NewFile(ChildFD, "socket inherited from the "+m.Name+" parent")
	defer f.Close()
	srv, err = m.Child(h, c, f)
	if err != nil {
		return nil, true, fmt.Errorf("child process of model %s: %w", m.Name, err)
	}
	return reportTo(srv, h, m.Name), true, nil
}
