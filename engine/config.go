package engine

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/tcplab/tcplab/internal/admit"
)

// Config is every model's settings. A model reads the fields it lists in
// Model.Options and ignores the rest. The zero value of each field means its
// default; Listen fills them in.
type Config struct {
	// Addr is the host:port to bind. Default 127.0.0.1:7000.
	Addr string
	// Backlog is the listen(2) accept-queue length. Default 1024. Linux
	// caps it at net.core.somaxconn.
	Backlog int
	// Listeners is the number of SO_REUSEPORT listeners on Addr. Default 1.
	Listeners int

	// MaxPending bounds each connection's outbound buffer in bytes. A
	// Write that would pass it closes the connection with
	// handler.ErrOverflow. Default 1 MiB.
	MaxPending int
	// MaxInbound bounds the bytes a session may leave unconsumed. Past it
	// the connection is closed with handler.ErrInputTooLarge. Default
	// 2 MiB; keep it above the handler's largest frame.
	MaxInbound int
	// WriteTimeout closes a connection whose socket accepts no bytes for
	// this long while data waits. Default 10s.
	WriteTimeout time.Duration
	// DrainTimeout bounds how long Shutdown lets queued writes flush when
	// its context has no deadline. Default 5s.
	DrainTimeout time.Duration

	// Workers is the worker count of pool, prefork and reactor-pool.
	// Default runtime.NumCPU().
	Workers int
	// Queue is the pool model's queue of accepted connections. Default 1024.
	Queue int
	// MaxThreads caps the thread model's connections (one OS thread
	// each). Default 4096.
	MaxThreads int
	// MaxProcs caps the fork model's child processes. Default 256.
	MaxProcs int
	// Loops is the event-loop count of reactor, reactor-pool and uring.
	// Default runtime.NumCPU(). Those models raise the process's
	// GOMAXPROCS to at least Loops+1 (never lower it), so a loop waiting
	// in the kernel keeps its thread: a process-wide change, logged.
	Loops int
	// Balance is how reactor, reactor-pool and uring spread connections
	// over loops:
	// "round-robin" (default) or "least-conns".
	Balance string

	// MaxConnsPerIP caps the connections open at once from one client
	// address (an IPv6 /64 counts as one address); past it a new
	// connection is refused with handler.ErrTooManyConns. Loopback clients
	// are exempt unless LimitLoopback. Default 64; negative turns it off.
	// prefork counts in each worker process separately.
	MaxConnsPerIP int
	// ConnRate is how many new connections one client address may open a
	// second, in bursts of up to ConnBurst; past it they are refused with
	// handler.ErrConnRate. Loopback is exempt unless LimitLoopback.
	// Defaults 10 and 64; a negative ConnRate turns it off.
	ConnRate  float64
	ConnBurst int
	// LimitLoopback applies MaxConnsPerIP and ConnRate to loopback
	// clients too.
	LimitLoopback bool
	// FrameTimeout closes a connection, with handler.ErrFrameTimeout and
	// the session's farewell, when input its session left unconsumed (a
	// frame begun but not finished) has waited this long since the read
	// that brought its first byte: a client trickling bytes cannot hold a
	// connection. Default 10s; negative turns it off.
	FrameTimeout time.Duration

	// TLSCert and TLSKey name PEM files holding the server's certificate
	// chain and private key. When set, every connection speaks TLS (1.2
	// or later); Listen refuses a model that cannot serve TLS.
	TLSCert, TLSKey string
	// HandshakeTimeout bounds a TLS handshake; a client that has not
	// finished it by then is disconnected. Default 5s.
	HandshakeTimeout time.Duration

	// ObserveQueue, if set, is called with the bytes queued on a
	// connection each time a flush takes them to write (once per write
	// batch): the source of the outbound queue histogram in package
	// metrics. It must be cheap and safe for concurrent use. It is not
	// passed to child processes.
	ObserveQueue func(bytes int) `json:"-"`

	// tls is loaded from TLSCert and TLSKey by Listen.
	tls *tls.Config

	// App names the handler being served. The engine does not read it: it
	// hands it, with the rest of Config, to the processes fork and prefork
	// start, so a program that can serve several handlers knows which one
	// to rebuild (see Child). The CLI sets it to --app.
	App string
	// AppParams are strings for the children of fork and prefork to read
	// (through Child) when they rebuild the handler, such as the address
	// of a service the parent started for them: the chat's embedded
	// message bus. Like App, the engine only passes them on.
	AppParams map[string]string `json:",omitempty"`

	// Logger receives the server's logs. Default slog.Default(). It is
	// not passed to child processes; each uses its own.
	Logger *slog.Logger
}

// Default values for Config fields.
const (
	DefaultAddr         = "127.0.0.1:7000"
	DefaultBacklog      = 1024
	DefaultMaxPending   = 1 << 20
	DefaultMaxInbound   = 2 << 20
	DefaultWriteTimeout = 10 * time.Second
	DefaultDrainTimeout = 5 * time.Second
	DefaultQueue        = 1024
	DefaultMaxThreads   = 4096
	DefaultMaxProcs     = 256
	DefaultBalance      = "round-robin"

	DefaultMaxConnsPerIP    = 64
	DefaultConnRate         = 10
	DefaultConnBurst        = 64
	DefaultFrameTimeout     = 10 * time.Second
	DefaultHandshakeTimeout = 5 * time.Second
)

// WithDefaults returns c with every unset field given its default.
func (c Config) WithDefaults() Config {
	def(&c.Addr, DefaultAddr)
	def(&c.Backlog, DefaultBacklog)
	def(&c.Listeners, 1)
	def(&c.MaxPending, DefaultMaxPending)
	def(&c.MaxInbound, DefaultMaxInbound)
	def(&c.Workers, runtime.NumCPU())
	def(&c.Queue, DefaultQueue)
	def(&c.MaxThreads, DefaultMaxThreads)
	def(&c.MaxProcs, DefaultMaxProcs)
	def(&c.Loops, runtime.NumCPU())
	def(&c.MaxConnsPerIP, DefaultMaxConnsPerIP)
	def(&c.ConnRate, DefaultConnRate)
	def(&c.ConnBurst, DefaultConnBurst)
	def(&c.FrameTimeout, DefaultFrameTimeout)
	def(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	def(&c.WriteTimeout, DefaultWriteTimeout)
	def(&c.DrainTimeout, DefaultDrainTimeout)
	def(&c.Balance, DefaultBalance)
	def(&c.Logger, slog.Default())
	return c
}

// def sets *v to d if *v is its type's zero value.
func def[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	positive := []struct {
		name string
		v    int
	}{
		{"backlog", c.Backlog}, {"listeners", c.Listeners}, {"max-pending", c.MaxPending},
		{"max-inbound", c.MaxInbound}, {"workers", c.Workers}, {"queue", c.Queue},
		{"max-threads", c.MaxThreads}, {"max-procs", c.MaxProcs}, {"loops", c.Loops},
	}
	for _, p := range positive {
		if p.v < 1 {
			return fmt.Errorf("--%s %d: must be at least 1", p.name, p.v)
		}
	}
	if err := checkMaxThreads(c.MaxThreads); err != nil {
		return err
	}
	if c.WriteTimeout < 0 || c.DrainTimeout < 0 || c.HandshakeTimeout < 0 {
		return fmt.Errorf("timeouts must not be negative")
	}
	if c.ConnBurst < 1 {
		return fmt.Errorf("--conn-burst %d: must be at least 1", c.ConnBurst)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together: give both or neither")
	}
	switch c.Balance {
	case "round-robin", "least-conns":
	default:
		return fmt.Errorf("--balance %q: want round-robin or least-conns", c.Balance)
	}
	return nil
}

// highWater and lowWater are the outbound levels at which a model pauses and
// resumes reading a connection, so a peer that sends but does not read
// meets backpressure instead of the overflow bound.
func (c Config) highWater() int { return c.MaxPending / 2 }
func (c Config) lowWater() int  { return c.MaxPending / 8 }

// TLS reports whether the server is to speak TLS (TLSCert is set).
func (c Config) TLS() bool { return c.TLSCert != "" }

// loadTLS reads the certificate and key into c.tls, if TLSCert is set.
func (c *Config) loadTLS() error {
	if !c.TLS() {
		c.tls = nil
		return nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return fmt.Errorf("--tls-cert %s, --tls-key %s: %w", c.TLSCert, c.TLSKey, err)
	}
	c.tls = &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}
	return nil
}

// admitOptions are the per-address limits for internal/admit.
func (c Config) admitOptions() admit.Options {
	return admit.Options{
		MaxPerIP:      c.MaxConnsPerIP,
		Rate:          c.ConnRate,
		Burst:         c.ConnBurst,
		LimitLoopback: c.LimitLoopback,
	}
}
