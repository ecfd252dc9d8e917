package conformance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/tcplab/tcplab/app/echo"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/handler"
)

// NamedHandler is a handler the suite can rebuild by name.
type NamedHandler struct {
	Name string
	New  func() handler.Handler
	// NewChild, if set, is how a child builds the handler instead of
	// New: from its parent's spec, whose Config.AppParams can carry the
	// handler's settings (the chat passes its options and its bus there).
	NewChild func(spec engine.ChildSpec) (handler.Handler, error)
}

// Handlers lists, by name, every handler a case runs. The process models
// (fork, prefork) re-execute the test binary, and the child rebuilds its
// parent's handler from this list by engine.Config.App, which runCases
// sets from the case's Handler. A new app adds its entry here.
func Handlers() []NamedHandler {
	return []NamedHandler{
		{Name: "echo", New: echo.New},
		{Name: "probe", New: Probe},
		{Name: "chat", New: newChat, NewChild: newChatChild},
		{Name: "offload", New: OffloadProbe},
	}
}

// handlerName returns the Handlers name of the constructor newHandler, or
// "" if it is not listed. Functions are not comparable, so it compares
// their code addresses.
func handlerName(newHandler func() handler.Handler) string {
	want := reflect.ValueOf(newHandler).Pointer()
	for _, nh := range Handlers() {
		if reflect.ValueOf(nh.New).Pointer() == want {
			return nh.Name
		}
	}
	return ""
}

// Main is TestMain for every package whose tests start servers. In the
// test process it runs the tests and then fails if goroutines leaked
// (goleak). In a child that a fork or prefork server started by
// re-executing the test binary, it runs no tests: it rebuilds the parent's
// handler by name (Handlers, engine.Config.App), serves the inherited
// socket through engine.Listen until the socket is done or SIGTERM asks
// for a shutdown, and exits.
//
//	func TestMain(m *testing.M) { conformance.Main(m) }
func Main(m *testing.M) {
	spec, child, err := engine.Child()
	if !child {
		goleak.VerifyTestMain(m)
		return
	}
	if err == nil {
		err = serveChild(spec)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "conformance child (pid %d): %v\n", os.Getpid(), err)
		os.Exit(1)
	}
	os.Exit(0)
}

// serveChild serves as a fork or prefork child until the model's Serve
// returns (a fork child's connection ended) or a signal asks for shutdown.
func serveChild(spec engine.ChildSpec) error {
	var newHandler func(engine.ChildSpec) (handler.Handler, error)
	var names []string
	for _, nh := range Handlers() {
		if nh.Name == spec.Config.App {
			newHandler = nh.NewChild
			if newHandler == nil {
				newHandler = func(engine.ChildSpec) (handler.Handler, error) { return nh.New(), nil }
			}
		}
		names = append(names, nh.Name)
	}
	if newHandler == nil {
		return fmt.Errorf("no handler named %q (Config.App; have %s)", spec.Config.App, strings.Join(names, ", "))
	}
	// From here on SIGTERM asks for a shutdown, even one that arrives
	// while the handler is still being built (the chat's connects to its
	// bus): the child then serves nothing and exits 0.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	h, err := newHandler(spec)
	if err != nil {
		return err
	}
	if c, ok := h.(io.Closer); ok {
		defer c.Close() // after the server has shut down
	}
	srv, err := engine.Listen(spec.Model, h, spec.Config)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), spec.Config.DrainTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-served; serr != nil {
		err = errors.Join(err, serr)
	}
	return err
}
