// Package serving holds the one Config and the one Stats of every model:
// the engine's blocking models and the event loops of internal/reactor
// both read this Config and count into these Counters. Package engine
// exports them as engine.Config and engine.Stats (aliases), and its
// godoc carries their field documentation, mirrored from here (a test in
// engine keeps the two in step).
//
// It sits below engine and internal/reactor so that both can import it:
// engine imports internal/reactor to build the event-loop models.
package serving

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/tcplab/tcplab/internal/admit"
)

// Config is every model's settings. A model reads the fields it lists in
// Model.Options and ignores the rest.
//
// The zero value of each field means its default, which WithDefaults fills
// in (Listen does); a setting that can be turned off takes a negative value
// for off. Validate checks a Config with its defaults filled in, and TLS
// reports whether TLSCert is set.
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
	// handler.ErrOverflow. Reading a connection pauses while more than
	// half of it is queued, and resumes under an eighth. Default 1 MiB.
	MaxPending int
	// MaxInbound bounds the bytes a session may leave unconsumed. Past it
	// the connection is closed with handler.ErrInputTooLarge. Default
	// 2 MiB; keep it above the handler's largest frame.
	MaxInbound int
	// WriteTimeout closes a connection whose socket accepts no bytes for
	// this long while data waits. Default 10s; it cannot be turned off.
	WriteTimeout time.Duration
	// DrainTimeout bounds how long Shutdown lets queued writes flush when
	// its context has no deadline, and how long Conn.Close lets a
	// connection flush. Default 5s.
	DrainTimeout time.Duration

	// Workers is the worker count of pool, prefork and reactor-pool.
	// Default runtime.NumCPU().
	Workers int
	// Queue is the pool model's queue of accepted connections. Default 1024.
	Queue int
	// MaxThreads caps the thread model's connections (one OS thread
	// each). Default 4096; at most Go's thread limit less 1000.
	MaxThreads int
	// MaxProcs caps the fork model's child processes. Default 256.
	MaxProcs int
	// Loops is the event-loop count of reactor, reactor-pool and uring.
	// Default runtime.NumCPU(). Those models raise the process's
	// GOMAXPROCS to at least Loops+1 (never lower it), so a loop waiting
	// in the kernel keeps its thread: a process-wide change, logged.
	Loops int
	// Balance is how reactor, reactor-pool and uring spread connections
	// over loops: "round-robin" (default) or "least-conns".
	Balance string
	// OffloadWorkers is how many functions that sessions offload
	// (handler.Offload) reactor, reactor-pool and uring run at once, on
	// goroutines started as needed; past it they wait their turn, in
	// order (at most one per connection). Default 64, for functions that
	// mostly wait (on the network, a disk); the blocking models run them
	// in place and ignore it.
	OffloadWorkers int

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

	// tls is loaded from TLSCert and TLSKey by LoadTLS.
	tls *tls.Config

	// App names the handler being served. The engine does not read it: it
	// hands it, with the rest of Config, to the processes fork and prefork
	// start, so a program that can serve several handlers knows which one
	// to rebuild (see engine.Child). The CLI sets it to --app.
	App string
	// AppParams are strings for the children of fork and prefork to read
	// (through engine.Child) when they rebuild the handler, such as the
	// address of a service the parent started for them: the chat's
	// embedded message bus. Like App, the engine only passes them on.
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
	DefaultBalance      = RoundRobin

	DefaultOffloadWorkers = 64

	DefaultMaxConnsPerIP    = 64
	DefaultConnRate         = 10
	DefaultConnBurst        = 64
	DefaultFrameTimeout     = 10 * time.Second
	DefaultHandshakeTimeout = 5 * time.Second
)

// Balance policies: how the event loops spread the connections accepted
// on one listener.
const (
	RoundRobin = "round-robin"
	LeastConns = "least-conns"
)

// ThreadHeadroom is how many threads MaxThreads leaves, below Go's limit
// (runtime/debug.SetMaxThreads, default 10000), for the runtime's own
// threads, threads blocked in system calls, and the connections' writer
// goroutines.
const ThreadHeadroom = 1000

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
	def(&c.OffloadWorkers, DefaultOffloadWorkers)
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

// Validate reports the first field that cannot work, as a *FieldError
// naming it. It checks c as a model uses it, so call it on
// c.WithDefaults(): a zero that stands for a default is refused here
// where the field has no zero setting (Backlog, WriteTimeout, ...). A
// program that fills in every field itself (a CLI, from flags with
// defaults) can call it directly, and a zero it finds was given.
func (c Config) Validate() error {
	positive := []struct {
		name string
		v    int
	}{
		{"Backlog", c.Backlog}, {"Listeners", c.Listeners}, {"MaxPending", c.MaxPending},
		{"MaxInbound", c.MaxInbound}, {"Workers", c.Workers}, {"Queue", c.Queue},
		{"MaxThreads", c.MaxThreads}, {"MaxProcs", c.MaxProcs}, {"Loops", c.Loops},
		{"ConnBurst", c.ConnBurst}, {"OffloadWorkers", c.OffloadWorkers},
	}
	for _, p := range positive {
		if p.v < 1 {
			return fieldError(p.name, p.v, "must be at least 1")
		}
	}
	if limit := goMaxThreads(); c.MaxThreads > limit-ThreadHeadroom {
		return fieldError("MaxThreads", c.MaxThreads, fmt.Sprintf(
			"must be at most %d, %d below Go's thread limit %d (runtime/debug.SetMaxThreads)",
			limit-ThreadHeadroom, ThreadHeadroom, limit))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"WriteTimeout", c.WriteTimeout}, {"HandshakeTimeout", c.HandshakeTimeout}} {
		if d.v <= 0 {
			return fieldError(d.name, d.v, "must be positive")
		}
	}
	if c.DrainTimeout < 0 {
		return fieldError("DrainTimeout", c.DrainTimeout, "must not be negative")
	}
	if math.IsNaN(c.ConnRate) {
		return fieldError("ConnRate", c.ConnRate, "must be a number")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return &FieldError{Fields: []string{"TLSCert", "TLSKey"}, Values: []string{"", ""}, Problem: "give both or neither"}
	}
	if c.Balance != RoundRobin && c.Balance != LeastConns {
		return fieldError("Balance", c.Balance, "want "+RoundRobin+" or "+LeastConns)
	}
	if c.Logger == nil {
		return &FieldError{Fields: []string{"Logger"}, Values: []string{""}, Problem: "must be set (WithDefaults sets slog.Default())"}
	}
	return nil
}

// goMaxThreads returns the runtime's current thread limit (default
// 10,000; a process that passes it aborts). The runtime offers no getter,
// so it sets the limit and restores it at once; the interim value is the
// highest there is, because setting a limit below the threads already
// running aborts too.
func goMaxThreads() int {
	n := debug.SetMaxThreads(math.MaxInt32)
	debug.SetMaxThreads(n)
	return n
}

// FieldError reports Config fields that cannot work. Its message names
// them as Config fields ("Config.WriteTimeout 0s: must be positive"); a
// program that sets them from flags renders it with its own names
// through Message.
type FieldError struct {
	// Fields are the names of the Config fields at fault, one or two
	// that go together ("WriteTimeout"; "TLSCert", "TLSKey").
	Fields []string
	// Values are the fields' values as given, in the same order; an
	// empty one is left out of the message.
	Values []string
	// Problem says what is wrong with them, if more than Err does.
	Problem string
	// Err is the underlying error, if any (a certificate file that cannot
	// be read).
	Err error
}

// fieldError returns a FieldError for one field with value v: quoted if
// a string.
func fieldError(field string, v any, problem string) *FieldError {
	val := fmt.Sprint(v)
	if s, ok := v.(string); ok {
		val = fmt.Sprintf("%q", s)
	}
	return &FieldError{Fields: []string{field}, Values: []string{val}, Problem: problem}
}

func (e *FieldError) Error() string {
	return e.Message(func(field string) string { return "Config." + field })
}

// Unwrap returns the underlying error.
func (e *FieldError) Unwrap() error { return e.Err }

// Message renders the error, naming each field name(field).
func (e *FieldError) Message(name func(field string) string) string {
	var b strings.Builder
	for i, f := range e.Fields {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(name(f))
		if i < len(e.Values) && e.Values[i] != "" {
			b.WriteString(" " + e.Values[i])
		}
	}
	if e.Problem != "" {
		b.WriteString(": " + e.Problem)
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

// HighWater and LowWater are the outbound levels at which a model pauses
// and resumes reading a connection, so a peer that sends but does not
// read meets backpressure instead of the overflow bound. HighWater also
// bounds the bytes a model reads at a time, so a reply as large as its
// request fits.
func HighWater(c Config) int { return c.MaxPending / 2 }

// LowWater: see HighWater.
func LowWater(c Config) int { return c.MaxPending / 8 }

// TLS reports whether the server is to speak TLS (TLSCert is set).
func (c Config) TLS() bool { return c.TLSCert != "" }

// LoadTLS reads the certificate and key into c, if TLSCert is set; a
// model then finds the TLS configuration with TLSConfig.
func LoadTLS(c *Config) error {
	if !c.TLS() {
		c.tls = nil
		return nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return &FieldError{Fields: []string{"TLSCert", "TLSKey"}, Values: []string{c.TLSCert, c.TLSKey}, Err: err}
	}
	c.tls = &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}
	return nil
}

// TLSConfig returns the TLS configuration LoadTLS loaded, or nil.
func TLSConfig(c Config) *tls.Config { return c.tls }

// Limiter returns the per-address limits c sets, for internal/admit.
func Limiter(c Config) *admit.Limiter {
	return admit.New(admit.Options{
		MaxPerIP:      c.MaxConnsPerIP,
		Rate:          c.ConnRate,
		Burst:         c.ConnBurst,
		LimitLoopback: c.LimitLoopback,
	})
}
