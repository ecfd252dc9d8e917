package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tcplab/tcplab/app/registry"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/handler"
)

// serveOptions holds the serve command's flags.
type serveOptions struct {
	app      string
	model    string
	logLevel string
	// printAddr prints the bound address on stdout once serving (ready.go).
	printAddr bool
	cfg       engine.Config
	hard      hardeningFlags
}

// modelFlags are the flags that only some models read. Each model lists the
// ones it reads in engine.Model.Options; setting another is warned about
// and ignored.
var modelFlags = []string{"listeners", "workers", "queue", "max-threads", "max-procs", "loops", "balance", "offload-workers"}

func newServeCmd() *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve an app under a concurrency model until SIGINT or SIGTERM",
		Long: `Serve an app under a concurrency model until SIGINT or SIGTERM.

On a signal it stops accepting, lets queued writes flush for up to
--drain-timeout, closes every connection and exits 0.`,
		Example: "  tcplab serve --app echo --model goroutine --addr 127.0.0.1:7000\n  nc 127.0.0.1 7000\n" + chatServeExample,
		Args:    noArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	f := cmd.Flags()
	f.StringVar(&o.app, "app", "echo", "protocol to serve: echo, chat or work")
	f.StringVar(&o.model, "model", "goroutine", "concurrency model (see tcplab models)")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.BoolVar(&o.printAddr, "print-addr", false, `once serving, print "listening on ADDR" (and "metrics on URL" with --metrics) to stdout`)
	addConfigFlags(f, &o.cfg)
	addAppFlags(f)
	addHardeningFlags(f, &o.hard)
	return cmd
}

func (o *serveOptions) run(cmd *cobra.Command) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", o.logLevel)}
	}
	// A fork or prefork child runs this same command line: its parent has
	// already said what it serves and warned about the flags, so the child
	// logs only warnings and errors, and repeats none of the parent's.
	spec, child, specErr := engine.Child()
	if specErr != nil {
		return specErr
	}
	if child {
		level = max(level, slog.LevelWarn)
	}
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
	o.cfg.Logger = log
	warnLog := log
	if child {
		warnLog = slog.New(slog.DiscardHandler)
	}

	model, err := engine.Lookup(o.model)
	if err != nil {
		return usageError{err}
	}
	apps := registry.Apps()
	a, err := apps.Lookup(o.app)
	if err != nil {
		return usageError{err}
	}
	if err := checkConfig(&o.cfg); err != nil {
		return usageError{err}
	}
	if err := o.hard.check(); err != nil {
		return usageError{err}
	}
	warnIgnoredFlags(cmd.Flags(), model, warnLog)
	warnIgnoredAppFlags(cmd.Flags(), a, warnLog)
	if err := checkAddr(o.cfg.Addr, warnLog); err != nil {
		return usageError{err}
	}
	// The app's handler, from its flags; a fork or prefork child rebuilds
	// its parent's from the same values, which the parent passes on in
	// o.cfg.AppParams.
	var h handler.Handler
	if child {
		h, err = apps.Child(spec, log)
	} else {
		h, err = apps.New(a.Name, appParams(cmd.Flags(), a), model, &o.cfg)
	}
	if re := (registry.RuntimeError{}); errors.As(err, &re) {
		return runtimeError{err}
	}
	if err != nil {
		return usageError{err}
	}

	if c, ok := h.(io.Closer); ok {
		defer c.Close() // after the server has shut down
	}
	m := o.hard.newMetrics(model.Name, a.Name, &o.cfg, child)
	srv, err := engine.Listen(model.Name, h, o.cfg)
	err = configError(err)
	if errors.Is(err, engine.ErrNoTLS) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	log.Info("serving", "app", a.Name, "model", model.Name, "addr", srv.Addr().String(), "tls", o.cfg.TLS())
	metricsURL, stopMetrics, err := o.hard.serveMetrics(m, srv, h, log)
	if err != nil {
		shutdown(srv, o.cfg.DrainTimeout, log)
		return err
	}
	defer stopMetrics()

	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Ready only now: a SIGTERM right after READY=1 must find its handler.
	ready := newReadiness(o.printAddr, cmd.OutOrStdout(), log, child)
	ready.ready(a.Name, model.Name, srv.Addr().String(), metricsURL)
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	select {
	case err := <-served:
		ready.stopping()
		shutdown(srv, o.cfg.DrainTimeout, log)
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		return nil
	case <-ctx.Done():
	}
	log.Info("shutting down", "drain_timeout", o.cfg.DrainTimeout.String())
	ready.stopping()
	shutdown(srv, o.cfg.DrainTimeout, log)
	if err := <-served; err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped", "accepted", srv.Stats().Accepted)
	return nil
}

// shutdown stops srv, letting queued writes flush for up to drain. It
// warns when the drain timeout cut connections off; with none open there
// was nothing to cut (the engine reports a drain of 0 as cut short even
// then).
func shutdown(srv engine.Server, drain time.Duration, log *slog.Logger) {
	open := srv.Stats().Open
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && open > 0 {
		log.Warn("drain timeout reached; remaining connections were closed", "err", err)
	}
}

// warnIgnoredFlags warns about model-specific flags set for a model that
// does not read them.
func warnIgnoredFlags(flags *pflag.FlagSet, m engine.Model, log *slog.Logger) {
	for _, name := range modelFlags {
		if flags.Changed(name) && !slices.Contains(m.Options, name) {
			log.Warn("flag does not apply to this model; ignored", "flag", "--"+name, "model", m.Name)
		}
	}
}

// checkAddr refuses a malformed address and warns about binding every
// interface.
func checkAddr(addr string, log *slog.Logger) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--addr %q: %w", addr, err)
	}
	if host == "" {
		return errors.New("--addr " + addr + ": give a host; 127.0.0.1 for this machine only, 0.0.0.0 for every interface")
	}
	if err := checkPort("--addr", addr, port, true); err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		log.Warn("listening on every interface; anyone who can reach this machine can connect", "addr", addr)
	}
	return nil
}

// checkPort refuses the port of flag's address addr unless it is a number
// from 1 to 65535 (0 too if ephemeral, where the kernel picks one) or a
// service name.
func checkPort(flag, addr, port string, ephemeral bool) error {
	want := "1 to 65535"
	if ephemeral {
		want = "0 (any free port) to 65535"
	}
	if port == "" {
		return fmt.Errorf("%s %q: give a port, %s", flag, addr, want)
	}
	n, err := net.LookupPort("tcp", port)
	if err != nil {
		if _, nerr := strconv.Atoi(port); nerr == nil {
			return fmt.Errorf("%s %q: port %s out of range: want %s", flag, addr, port, want)
		}
		return fmt.Errorf("%s %q: port %q is neither a number nor a known service: want %s", flag, addr, port, want)
	}
	if n == 0 && !ephemeral {
		return fmt.Errorf("%s %q: port 0: want %s", flag, addr, want)
	}
	return nil
}
