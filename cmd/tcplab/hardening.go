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

// hardeningFlags are serve's flags for exposure: per-address limits, the
// frame timeout, TLS, and the metrics endpoint.
type hardeningFlags struct {
	maxPerIP      int
	limitLoopback bool
	connRate      float64
	connBurst     int
	frameTimeout  time.Duration
	tlsCert       string
	tlsKey        string
	handshake     time.Duration
	metrics       string
	pprof         bool
}

func addHardeningFlags(f *pflag.FlagSet, h *hardeningFlags) {
	d := engine.Config{}.WithDefaults()
	f.IntVar(&h.maxPerIP, "max-conns-per-ip", d.MaxConnsPerIP, "connections open at once from one client address (IPv6: one /64); past it refused; 0 turns it off")
	f.BoolVar(&h.limitLoopback, "limit-loopback", false, "apply --max-conns-per-ip and --conn-rate to loopback clients too (exempt by default)")
	f.Float64Var(&h.connRate, "conn-rate", d.ConnRate, "new connections a second from one client address; past it refused; 0 turns it off")
	f.IntVar(&h.connBurst, "conn-burst", d.ConnBurst, "new connections one client address may open at once before --conn-rate applies")
	f.DurationVar(&h.frameTimeout, "frame-timeout", d.FrameTimeout, "close a connection whose frame is not complete this long after its first byte (slowloris); 0 turns it off")
	f.StringVar(&h.tlsCert, "tls-cert", "", "PEM certificate chain: serve TLS (1.2 or later) with --tls-key")
	f.StringVar(&h.tlsKey, "tls-key", "", "PEM private key for --tls-cert")
	f.DurationVar(&h.handshake, "handshake-timeout", d.HandshakeTimeout, "disconnect a client that has not finished the TLS handshake by then")
	f.StringVar(&h.metrics, "metrics", "", "serve Prometheus metrics on this address (/metrics); a bare port listens on 127.0.0.1 only; off by default")
	f.BoolVar(&h.pprof, "pprof", false, "also serve Go's profiler under /debug/pprof/ on the --metrics listener")
}

// apply checks the flags and puts them into cfg. A flag's 0 ("off")
// becomes the engine's negative value.
func (h *hardeningFlags) apply(cfg *engine.Config) error {
	switch {
	case h.maxPerIP < 0:
		return fmt.Errorf("--max-conns-per-ip %d: want 0 (off) or a positive number", h.maxPerIP)
	case h.connRate < 0 || h.connRate != h.connRate:
		return fmt.Errorf("--conn-rate %v: want 0 (off) or a positive number", h.connRate)
	case h.connBurst < 1:
		return fmt.Errorf("--conn-burst %d: must be at least 1", h.connBurst)
	case h.frameTimeout < 0:
		return fmt.Errorf("--frame-timeout %v: want 0 (off) or a positive duration", h.frameTimeout)
	case h.handshake <= 0:
		return fmt.Errorf("--handshake-timeout %v: must be positive", h.handshake)
	case h.pprof && h.metrics == "":
		return errors.New("--pprof is served on the --metrics listener: give --metrics too")
	}
	if h.metrics != "" {
		if err := checkMetricsAddr(h.metrics); err != nil {
			return err
		}
	}
	off := func(v int) int {
		if v == 0 {
			return -1
		}
		return v
	}
	cfg.MaxConnsPerIP = off(h.maxPerIP)
	cfg.ConnRate = h.connRate
	if h.connRate == 0 {
		cfg.ConnRate = -1
	}
	cfg.ConnBurst = h.connBurst
	cfg.LimitLoopback = h.limitLoopback
	cfg.FrameTimeout = h.frameTimeout
	if h.frameTimeout == 0 {
		cfg.FrameTimeout = -1
	}
	cfg.TLSCert, cfg.TLSKey = h.tlsCert, h.tlsKey
	cfg.HandshakeTimeout = h.handshake
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
	addr, err := metrics.LoopbackDefault(h.metrics) // checked by apply
	if err != nil {
		return "", nil, err
	}
	if host, _, _ := net.SplitHostPort(addr); net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified() {
		msg := "warning: metrics on every interface; anyone who can reach this machine can read them"
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
			log.Warn("warning: metrics endpoint", "err", err)
		}
	}, nil
}
