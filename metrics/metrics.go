// Package metrics exports a tcplab server's counters to Prometheus, on an
// HTTP listener of its own (serve --metrics): /metrics, and /debug/pprof/
// when asked for.
//
// Every metric is named tcplab_* and carries the model and app as labels.
// The connection and byte counters are read from engine.Server.Stats, and
// the frame and rate-limit counters from the handler if it implements
// handler.Counter, when Prometheus scrapes: serving costs nothing extra for
// them. The one metric fed as the server runs is the histogram of outbound
// queue bytes, through engine.Config.ObserveQueue (one observation per
// write batch).
//
// Each Metrics has its own prometheus.Registry; nothing is registered in
// the client library's global default registry.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/admit"
)

// Prefix starts every metric name.
const Prefix = "tcplab_"

// queueBuckets returns the upper bounds, in bytes, of the outbound queue
// histogram: 64 B to 16 MiB, by factors of 4.
func queueBuckets() []float64 { return prometheus.ExponentialBuckets(64, 4, 10) }

// Metrics is one server's registry.
type Metrics struct {
	reg   *prometheus.Registry
	wrap  prometheus.Registerer // adds the prefix and the labels
	queue prometheus.Histogram

	mu      sync.Mutex
	watched bool
}

// New returns the registry of a server running app under model, with the
// outbound queue histogram and the Go runtime's and the process's own
// metrics (tcplab_go_*, tcplab_process_*). Call Watch once the server
// exists.
func New(model, app string) *Metrics {
	reg := prometheus.NewRegistry()
	wrap := prometheus.WrapRegistererWith(prometheus.Labels{"model": model, "app": app},
		prometheus.WrapRegistererWithPrefix(Prefix, reg))
	m := &Metrics{
		reg:  reg,
		wrap: wrap,
		queue: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "outbound_queue_bytes",
			Help:    "Bytes queued on a connection when a flush takes them to write, one observation per write batch.",
			Buckets: queueBuckets(),
		}),
	}
	wrap.MustRegister(m.queue, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveQueue records one write batch of n bytes. Pass it as
// engine.Config.ObserveQueue.
func (m *Metrics) ObserveQueue(n int) { m.queue.Observe(float64(n)) }

// Watch exports srv's counters, and h's if it is a handler.Counter, read
// at each scrape. Call it once.
func (m *Metrics) Watch(srv engine.Server, h handler.Handler) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.watched {
		return errors.New("metrics: Watch called twice")
	}
	m.watched = true
	c := &statsCollector{srv: srv}
	c.counter, _ = h.(handler.Counter)
	if err := m.wrap.Register(c); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// Gather returns the current metrics, as a scrape would.
func (m *Metrics) Gather() (map[string]float64, error) {
	mfs, err := m.reg.Gather()
	if err != nil {
		return nil, fmt.Errorf("metrics: gather: %w", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			name := mf.GetName()
			for _, lp := range mt.GetLabel() {
				if lp.GetName() == "reason" {
					name += "{reason=" + lp.GetValue() + "}"
				}
			}
			switch {
			case mt.GetCounter() != nil:
				out[name] = mt.GetCounter().GetValue()
			case mt.GetGauge() != nil:
				out[name] = mt.GetGauge().GetValue()
			case mt.GetHistogram() != nil:
				out[name+"_count"] = float64(mt.GetHistogram().GetSampleCount())
				out[name+"_sum"] = mt.GetHistogram().GetSampleSum()
			}
		}
	}
	return out, nil
}

// Handler serves /metrics and, with pprof set, Go's profiles under
// /debug/pprof/.
func (m *Metrics) Handler(withPprof bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.wrap}))
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// Endpoint is the HTTP listener the metrics are served on.
type Endpoint struct {
	ln   net.Listener
	srv  *http.Server
	done chan error
}

// Serve listens on addr and serves Handler(withPprof) until Close. An
// address without a host (":9100") listens on 127.0.0.1 only.
func (m *Metrics) Serve(addr string, withPprof bool) (*Endpoint, error) {
	addr, err := LoopbackDefault(addr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics: %w", err)
	}
	e := &Endpoint{
		ln: ln,
		srv: &http.Server{
			Handler:           m.Handler(withPprof),
			ReadHeaderTimeout: 5 * time.Second,
			// A CPU profile or trace takes as long as asked (?seconds=N).
			WriteTimeout: 0,
			IdleTimeout:  time.Minute,
		},
		done: make(chan error, 1),
	}
	go func() { e.done <- e.srv.Serve(ln) }()
	return e, nil
}

// Addr returns the bound address.
func (e *Endpoint) Addr() net.Addr { return e.ln.Addr() }

// Close stops the listener, waits until ctx is done for requests in
// progress, and returns once the server has stopped.
func (e *Endpoint) Close(ctx context.Context) error {
	err := e.srv.Shutdown(ctx)
	if err != nil {
		e.srv.Close()
	}
	if serr := <-e.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("metrics: shutdown: %w", err)
	}
	return nil
}

// LoopbackDefault returns addr with 127.0.0.1 as its host if it has none
// (":9100" or "9100"), and an error if it is not host:port.
func LoopbackDefault(addr string) (string, error) {
	if _, err := net.LookupPort("tcp", addr); err == nil && !strings.Contains(addr, ":") {
		addr = ":" + addr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("--metrics %q: %w", addr, err)
	}
	if port == "" {
		return "", fmt.Errorf("--metrics %q: give a port (0 picks a free one)", addr)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// statsCollector turns Stats and Counts into metrics at scrape time.
type statsCollector struct {
	srv     engine.Server
	counter handler.Counter
}

var (
	descOpen          = prometheus.NewDesc("connections_open", "Connections open now.", nil, nil)
	descAccepted      = prometheus.NewDesc("connections_accepted_total", "Connections accepted and handed to the handler.", nil, nil)
	descRefused       = prometheus.NewDesc("connections_refused_total", "Connections refused before the handler saw them, by reason.", []string{"reason"}, nil)
	descAcceptErrors  = prometheus.NewDesc("accept_errors_total", "Failed accept calls (EMFILE, ENFILE and the like).", nil, nil)
	descBytesIn       = prometheus.NewDesc("bytes_in_total", "Bytes read from clients.", nil, nil)
	descBytesOut      = prometheus.NewDesc("bytes_out_total", "Bytes written to clients.", nil, nil)
	descSlowConsumers = prometheus.NewDesc("slow_consumer_disconnects_total", "Connections closed because their outbound buffer passed --max-pending.", nil, nil)
	descFrameTimeouts = prometheus.NewDesc("frame_timeouts_total", "Connections closed because a frame was not finished within --frame-timeout.", nil, nil)
	descWriteTimeouts = prometheus.NewDesc("write_timeouts_total", "Connections closed because the peer took no bytes for --write-timeout.", nil, nil)
	descHandshakes    = prometheus.NewDesc("tls_handshake_errors_total", "TLS handshakes that failed or timed out.", nil, nil)
	descOffloads      = prometheus.NewDesc("offloaded_functions_total", "Functions sessions ran off the event loop (handler.Offload) that have returned.", nil, nil)
	descOffloadPanics = prometheus.NewDesc("offload_panics_total", "Offloaded functions that panicked; each closed its connection.", nil, nil)
	descStalls        = prometheus.NewDesc("fanout_stalls_total", "Pauses of a connection's reading that the app asked for: in the chat, a sender slowed because a receiver of its fan-out fell behind.", nil, nil)
	descStallSeconds  = prometheus.NewDesc("fanout_stall_seconds_total", "Total length of those pauses, in seconds.", nil, nil)
	descFramesIn      = prometheus.NewDesc("frames_in_total", "Frames (messages) received from clients, as the app counts them.", nil, nil)
	descFramesOut     = prometheus.NewDesc("frames_out_total", "Frames queued to clients, as the app counts them.", nil, nil)
	descRateLimited   = prometheus.NewDesc("rate_limited_messages_total", "Messages the app dropped for its per-connection rate limit.", nil, nil)
)

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descOpen, descAccepted, descRefused, descAcceptErrors, descBytesIn,
		descBytesOut, descSlowConsumers, descFrameTimeouts, descWriteTimeouts, descHandshakes, descOffloads, descOffloadPanics,
		descStalls, descStallSeconds} {
		ch <- d
	}
	if c.counter != nil {
		ch <- descFramesIn
		ch <- descFramesOut
		ch <- descRateLimited
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.srv.Stats()
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	ch <- prometheus.MustNewConstMetric(descOpen, prometheus.GaugeValue, float64(st.Open))
	counter(descAccepted, st.Accepted)
	for _, reason := range admit.Reasons() {
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(st.RefusedBy[reason]), reason)
	}
	counter(descAcceptErrors, st.AcceptErrors)
	counter(descBytesIn, st.BytesIn)
	counter(descBytesOut, st.BytesOut)
	counter(descSlowConsumers, st.Overflows)
	counter(descFrameTimeouts, st.FrameTimeouts)
	counter(descWriteTimeouts, st.WriteTimeouts)
	counter(descHandshakes, st.HandshakeErrors)
	counter(descOffloads, st.Offloads)
	counter(descOffloadPanics, st.OffloadPanics)
	counter(descStalls, st.Stalls)
	ch <- prometheus.MustNewConstMetric(descStallSeconds, prometheus.CounterValue, st.StallTime.Seconds())
	if c.counter != nil {
		// Under fork and prefork the children count; the parent adds.
		n := c.counter.Counts()
		counter(descFramesIn, n.FramesIn+st.ChildApp.FramesIn)
		counter(descFramesOut, n.FramesOut+st.ChildApp.FramesOut)
		counter(descRateLimited, n.RateLimited+st.ChildApp.RateLimited)
	}
}
