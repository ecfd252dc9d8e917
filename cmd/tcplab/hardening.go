package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/metrics"
)

// hardeningFlags are serve's flags for the metrics endpoint. The other
// hardening flags (per-address limits, the frame timeout, TLS) set
// engine.Config fields: configFlags has them.
type hardeningFlags struct {
	metrics string
	pprof   bool
}

func addHardeningFlags(f *pflag.FlagSet, h *hardeningFlags) {
	f.StringVar(&h.metrics, "metrics", "", "serve Prometheus metrics on this address (/metrics); a bare port listens on 127.0.0.1 only; off by default")
	f.BoolVar(&h.pprof, "pprof", false, "also serve Go's profiler under /debug/pprof/ on the --metrics listener")
}

// check refuses --pprof without --metrics and a --metrics address that
// cannot be listened on.
func (h *hardeningFlags) check() error {
	if h.pprof && h.metrics == "" {
		return errors.New("--pprof is served on the --metrics listener: give --metrics too")
	}
	if h.metrics != "" {
		return checkMetricsAddr(h.metrics)
	}
	return nil
}

// checkMetricsAddr refuses a --metrics address, or bare port, that cannot
// be listened on.
func checkMetricsAddr(spec string) error {
	// A bare number is a port, even out of range (LoopbackDefault would
	// call it an address missing its port).
	if _, err := strconv.Atoi(spec); err == nil {
		return checkPort("--metrics", spec, spec, true)
	}
	addr, err := metrics.LoopbackDefault(spec)
	if err != nil {
		return err
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--metrics %q: %w", spec, err)
	}
	return checkPort("--metrics", spec, port, true)
}

// newMetrics returns the metrics registry if --metrics is set, and hooks
// its queue histogram into cfg. A fork or prefork child serves no metrics
// of its own: its parent does.
func (h *hardeningFlags) newMetrics(model, app string, cfg *engine.Config, child bool) *metrics.Metrics {
	if h.metrics == "" || child {
		return nil
	}
	m := metrics.New(model, app)
	cfg.ObserveQueue = m.ObserveQueue
	return m
}

// serveMetrics starts the metrics endpoint for srv and returns its URL
// ("" without --metrics) and stop function. It warns, as serve does, about
// listening on every interface.
func (h *hardeningFlags) serveMetrics(m *metrics.Metrics, srv engine.Server, hd handler.Handler, log *slog.Logger) (string, func(), error) {
	if m == nil {
		return "", func() {}, nil
	}
	addr, err := metrics.LoopbackDefault(h.metrics) // checked by check
	if err != nil {
		return "", nil, err
	}
	if host, _, _ := net.SplitHostPort(addr); net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified() {
		msg := "metrics on every interface; anyone who can reach this machine can read them"
		if h.pprof {
			msg += " and profile the process"
		}
		log.Warn(msg, "addr", addr)
	}
	if err := m.Watch(srv, hd); err != nil {
		return "", nil, err
	}
	e, err := m.Serve(addr, h.pprof)
	if err != nil {
		return "", nil, err
	}
	url := "http://" + e.Addr().String() + "/metrics"
	log.Info("metrics", "url", url, "pprof", h.pprof)
	return url, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := e.Close(ctx); err != nil {
			log.Warn("metrics endpoint", "err", err)
		}
	}, nil
}
