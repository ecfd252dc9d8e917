package engine

import "github.com/tcplab/tcplab/internal/serving"

// Config is every model's settings. A model reads the fields it lists in
// Model.Options and ignores the rest.
//
// The zero value of each field means its default, which WithDefaults fills
// in (Listen does); a setting that can be turned off takes a negative value
// for off. Validate checks a Config with its defaults filled in, and TLS
// reports whether TLSCert is set.
//
// It is defined in internal/serving, which the engine shares with
// the event loops of internal/reactor:
//
//	type Config struct {
//		// Addr is the host:port to bind. Default 127.0.0.1:7000.
//		Addr string
//		// Backlog is the listen(2) accept-queue length. Default 1024. Linux
//		// caps it at net.core.somaxconn.
//		Backlog int
//		// Listeners is the number of SO_REUSEPORT listeners on Addr. Default 1.
//		Listeners int
//
//		// MaxPending bounds each connection's outbound buffer in bytes. A
//		// Write that would pass it closes the connection with
//		// handler.ErrOverflow. Reading a connection pauses while more than
//		// half of it is queued, and resumes under an eighth. Default 1 MiB.
//		MaxPending int
//		// MaxInbound bounds the bytes a session may leave unconsumed. Past it
//		// the connection is closed with handler.ErrInputTooLarge. Default
//		// 2 MiB; keep it above the handler's largest frame.
//		MaxInbound int
//		// WriteTimeout closes a connection whose socket accepts no bytes for
//		// this long while data waits. Default 10s; it cannot be turned off.
//		WriteTimeout time.Duration
//		// DrainTimeout bounds how long Shutdown lets queued writes flush when
//		// its context has no deadline, and how long Conn.Close lets a
//		// connection flush. Default 5s.
//		DrainTimeout time.Duration
//
//		// Workers is the worker count of pool, prefork and reactor-pool.
//		// Default runtime.NumCPU().
//		Workers int
//		// Queue is the pool model's queue of accepted connections. Default 1024.
//		Queue int
//		// MaxThreads caps the thread model's connections (one OS thread
//		// each). Default 4096; at most Go's thread limit less 1000.
//		MaxThreads int
//		// MaxProcs caps the fork model's child processes. Default 256.
//		MaxProcs int
//		// Loops is the event-loop count of reactor, reactor-pool and uring.
//		// Default runtime.NumCPU(). Those models raise the process's
//		// GOMAXPROCS to at least Loops+1 (never lower it), so a loop waiting
//		// in the kernel keeps its thread: a process-wide change, logged.
//		Loops int
//		// Balance is how reactor, reactor-pool and uring spread connections
//		// over loops: "round-robin" (default) or "least-conns".
//		Balance string
//		// OffloadWorkers is how many functions that sessions offload
//		// (handler.Offload) reactor, reactor-pool and uring run at once, on
//		// goroutines started as needed; past it they wait their turn, in
//		// order (at most one per connection). Default 64, for functions that
//		// mostly wait (on the network, a disk); the blocking models run them
//		// in place and ignore it.
//		OffloadWorkers int
//
//		// MaxConnsPerIP caps the connections open at once from one client
//		// address (an IPv6 /64 counts as one address); past it a new
//		// connection is refused with handler.ErrTooManyConns. Loopback clients
//		// are exempt unless LimitLoopback. Default 64; negative turns it off.
//		// prefork counts in each worker process separately.
//		MaxConnsPerIP int
//		// ConnRate is how many new connections one client address may open a
//		// second, in bursts of up to ConnBurst; past it they are refused with
//		// handler.ErrConnRate. Loopback is exempt unless LimitLoopback.
//		// Defaults 10 and 64; a negative ConnRate turns it off.
//		ConnRate  float64
//		ConnBurst int
//		// LimitLoopback applies MaxConnsPerIP and ConnRate to loopback
//		// clients too.
//		LimitLoopback bool
//		// FrameTimeout closes a connection, with handler.ErrFrameTimeout and
//		// the session's farewell, when input its session left unconsumed (a
//		// frame begun but not finished) has waited this long since the read
//		// that brought its first byte: a client trickling bytes cannot hold a
//		// connection. Default 10s; negative turns it off.
//		FrameTimeout time.Duration
//
//		// TLSCert and TLSKey name PEM files holding the server's certificate
//		// chain and private key. When set, every connection speaks TLS (1.2
//		// or later); Listen refuses a model that cannot serve TLS.
//		TLSCert, TLSKey string
//		// HandshakeTimeout bounds a TLS handshake; a client that has not
//		// finished it by then is disconnected. Default 5s.
//		HandshakeTimeout time.Duration
//
//		// ObserveQueue, if set, is called with the bytes queued on a
//		// connection each time a flush takes them to write (once per write
//		// batch): the source of the outbound queue histogram in package
//		// metrics. It must be cheap and safe for concurrent use. It is not
//		// passed to child processes.
//		ObserveQueue func(bytes int) `json:"-"`
//
//		// App names the handler being served. The engine does not read it: it
//		// hands it, with the rest of Config, to the processes fork and prefork
//		// start, so a program that can serve several handlers knows which one
//		// to rebuild (see engine.Child). The CLI sets it to --app.
//		App string
//		// AppParams are strings for the children of fork and prefork to read
//		// (through engine.Child) when they rebuild the handler, such as the
//		// address of a service the parent started for them: the chat's
//		// embedded message bus. Like App, the engine only passes them on.
//		AppParams map[string]string `json:",omitempty"`
//
//		// Logger receives the server's logs. Default slog.Default(). It is
//		// not passed to child processes; each uses its own.
//		Logger *slog.Logger
//	}
type Config = serving.Config

// FieldError reports Config fields that cannot work. Its message names
// them as Config fields ("Config.WriteTimeout 0s: must be positive"); a
// program that sets them from flags renders it with its own names
// through Message.
//
// It is defined in internal/serving, which the engine shares with
// the event loops of internal/reactor:
//
//	type FieldError struct {
//		// Fields are the names of the Config fields at fault, one or two
//		// that go together ("WriteTimeout"; "TLSCert", "TLSKey").
//		Fields []string
//		// Values are the fields' values as given, in the same order; an
//		// empty one is left out of the message.
//		Values []string
//		// Problem says what is wrong with them, if more than Err does.
//		Problem string
//		// Err is the underlying error, if any (a certificate file that cannot
//		// be read).
//		Err error
//	}
type FieldError = serving.FieldError

// Default values for Config fields.
const (
	DefaultAddr         = serving.DefaultAddr
	DefaultBacklog      = serving.DefaultBacklog
	DefaultMaxPending   = serving.DefaultMaxPending
	DefaultMaxInbound   = serving.DefaultMaxInbound
	DefaultWriteTimeout = serving.DefaultWriteTimeout
	DefaultDrainTimeout = serving.DefaultDrainTimeout
	DefaultQueue        = serving.DefaultQueue
	DefaultMaxThreads   = serving.DefaultMaxThreads
	DefaultMaxProcs     = serving.DefaultMaxProcs
	DefaultBalance      = serving.DefaultBalance

	DefaultMaxConnsPerIP    = serving.DefaultMaxConnsPerIP
	DefaultConnRate         = serving.DefaultConnRate
	DefaultConnBurst        = serving.DefaultConnBurst
	DefaultFrameTimeout     = serving.DefaultFrameTimeout
	DefaultHandshakeTimeout = serving.DefaultHandshakeTimeout

	DefaultOffloadWorkers = serving.DefaultOffloadWorkers
)
