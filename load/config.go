// Package load is tcplab's load generator, as a library: the engine behind
// `tcplab load` and each cell of `tcplab bench`.
//
// It drives a server over TCP with N connections and measures what a user
// of that server would see:
//
//   - Echo, closed loop (Rate 0): each connection writes a message and waits
//     for its echo before writing the next. This measures service time.
//   - Echo, open loop (Rate > 0): messages are due at fixed times, Rate per
//     second in total. A connection has one message in flight; one that is
//     late is sent as soon as the previous echo is back, and its latency
//     counts from the time it was due, so a stall shows in the numbers
//     instead of quietly slowing the client (coordinated omission).
//   - Chat: N connections in one room, Senders of them posting at Rate per
//     second in total; every member measures delivery latency from the send
//     time carried in the message text.
//   - Work: as echo, closed or open loop, with the work protocol's requests
//     (sha, sleep, echo; see WorkSpec): Heavy connections send HeavyWork,
//     the rest Work, every reply is checked, and latency is also reported
//     per class (Result.Classes).
//
// A connection is successful only once one application round trip
// completes within ConnectTimeout (an echoed message, or the chat server's
// HELLO): a connect() that returned proves nothing, because the kernel
// completes handshakes that no accept() ever takes.
//
// Latencies go into HDR histograms (github.com/HdrHistogram/hdrhistogram-go).
// The result also carries the client's own CPU use, with a flag when it
// reached 90% of a core (the client, not the server, may have been the
// bottleneck), and the kernel's ListenOverflows and ListenDrops deltas. A
// paced run (open loop, chat senders) also reports its own send lateness
// and the rate it reached (Result.Pacing), with warnings when they make
// its numbers suspect.
package load

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net"
	"time"

	"github.com/tcplab/tcplab/frame"
)

// Apps the generator speaks.
const (
	AppEcho = "echo"
	AppChat = "chat"
	AppWork = "work" // the work protocol (package app/work); see WorkSpec
)

// Config describes one run. The zero value of a field means its default.
type Config struct {
	// Addr is the server's host:port. Default 127.0.0.1:7000.
	Addr string
	// App is AppEcho (default), AppChat or AppWork.
	App string
	// Conns is the number of concurrent connections. Default 10.
	Conns int
	// Duration is how long messages are sent. Default 5s.
	Duration time.Duration
	// Size is the message size in bytes: the echo payload, or the chat
	// message text (at least the few bytes of its timestamps). Default 64.
	Size int
	// Rate is the total messages per second: 0 runs echo closed loop.
	// Chat needs a rate; 0 means 50 per second per sender.
	Rate float64
	// ConnectRate opens connections at this many per second; 0 opens them
	// all at once.
	ConnectRate float64
	// ConnectTimeout bounds a connection's first application round trip,
	// from the start of its connect. Default 3s.
	ConnectTimeout time.Duration
	// PerConn closes each echo connection after this many messages and
	// opens a new one (short-lived, HTTP-style connections). 0 keeps
	// connections for the whole run.
	PerConn int
	// Idle, for echo, opens Conns connections and leaves them idle for
	// Duration, then completes one round trip on each (idle.go).
	Idle bool
	// OnIdle, if set, is called once in an Idle run when the connections
	// have been idle for Duration, just before their round trips.
	OnIdle func()
	// Senders is how many chat connections post. Default min(Conns, 10).
	Senders int
	// SendBuffer, for chat, is the kernel send buffer (SO_SNDBUF) of each
	// sender's socket, in bytes; 0 leaves the kernel's own, which on
	// loopback grows to megabytes. A small one makes a sender meet the
	// server's flow control (it stops reading the sender) within a short
	// run, instead of writing megabytes into the kernel on the CPU its
	// receivers need too.
	SendBuffer int
	// Framing is the chat framing, frame.Length (default) or frame.Line.
	Framing frame.Kind
	// Room is the chat room. Default "lobby", where the server puts every
	// new connection; another room is joined with /join first.
	Room string
	// Work is the request the light connections send (AppWork); the
	// zero value is echo. Heavy of the connections (the first ones, the
	// greedy clients) send HeavyWork instead; HeavyWork must be set when
	// Heavy is not 0. See WorkSpec and Result.Classes.
	Work      WorkSpec
	Heavy     int
	HeavyWork WorkSpec
	// PortsPerSource is how many connections one source address may hold
	// to the server; past it, connections to a 127.0.0.0/8 server come from
	// 127.0.0.1, 127.0.0.2, ... Default: the size of
	// net.ipv4.ip_local_port_range.
	PortsPerSource int
	// Progress, if set, is called about five times a second during the
	// run, from one goroutine.
	Progress func(Progress)
}

// Progress is a live view of a run.
type Progress struct {
	// Elapsed is the time since the run started; Total is its planned
	// length (connecting included for chat).
	Elapsed, Total time.Duration
	// OK and Failed count connections so far.
	OK, Failed int
	// Msgs counts messages completed so far (delivered, for chat).
	Msgs uint64
}

// Defaults for Config fields.
const (
	DefaultAddr           = "127.0.0.1:7000"
	DefaultConns          = 10
	DefaultDuration       = 5 * time.Second
	DefaultSize           = 64
	DefaultConnectTimeout = 3 * time.Second
	DefaultRoom           = "lobby"
	// DefaultSenderRate is a chat sender's rate when Config.Rate is 0. It
	// stays under the chat server's default per-connection limit (100/s).
	DefaultSenderRate = 50
	// MaxSize bounds Size: a message must fit one frame.
	MaxSize = frame.DefaultMax
	// MaxBuffers bounds the message buffers a run holds: two of Size bytes
	// per connection (what it sends and what it reads back), so Conns x
	// Size may be at most 512 MiB.
	MaxBuffers = 1 << 30
)

// WithDefaults returns c with every unset field given its default.
func (c Config) WithDefaults() Config {
	c.Addr = cmp.Or(c.Addr, DefaultAddr)
	c.App = cmp.Or(c.App, AppEcho)
	c.Conns = cmp.Or(c.Conns, DefaultConns)
	c.Duration = cmp.Or(c.Duration, DefaultDuration)
	c.Size = cmp.Or(c.Size, DefaultSize)
	c.ConnectTimeout = cmp.Or(c.ConnectTimeout, DefaultConnectTimeout)
	if c.App == AppChat {
		c.Senders = cmp.Or(c.Senders, min(c.Conns, 10))
		if c.Rate == 0 && c.Senders > 0 { // else Validate refuses Senders
			c.Rate = DefaultSenderRate * float64(c.Senders)
		}
		c.Framing = cmp.Or(c.Framing, frame.Length)
		c.Room = cmp.Or(c.Room, DefaultRoom)
	}
	return c
}

// Validate reports the first setting that cannot work, as a one-line
// error naming the flag.
func (c Config) Validate() error {
	_, port, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("--addr %q: %w", c.Addr, err)
	}
	if n, err := net.LookupPort("tcp", port); err != nil || n == 0 {
		return fmt.Errorf("--addr %q: port %q: want 1 to 65535", c.Addr, port)
	}
	switch {
	case c.App != AppEcho && c.App != AppChat && c.App != AppWork:
		return fmt.Errorf("--app %q: want echo, chat or work", c.App)
	case c.Conns < 1:
		return fmt.Errorf("--conns %d: must be at least 1", c.Conns)
	case c.SendBuffer < 0:
		return fmt.Errorf("--send-buffer %d: must be 0 (the kernel's) or a size in bytes", c.SendBuffer)
	case c.App == AppChat && (c.Senders < 1 || c.Senders > c.Conns):
		return fmt.Errorf("--senders %d: must be 1 to --conns (%d)", c.Senders, c.Conns)
	case c.Duration <= 0:
		return fmt.Errorf("--duration %v: must be positive", c.Duration)
	case c.Size < 1 || c.Size > MaxSize:
		return fmt.Errorf("--size %d: must be 1 to %d", c.Size, MaxSize)
	case c.Conns > MaxBuffers/(2*c.Size):
		return fmt.Errorf("--conns %d x --size %d: two buffers of --size per connection would take %.1f GiB, past the %d GiB limit; lower one of them",
			c.Conns, c.Size, 2*float64(c.Conns)*float64(c.Size)/(1<<30), MaxBuffers>>30)
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return fmt.Errorf("--rate %v: must be 0 (closed loop) or positive", c.Rate)
	case c.ConnectRate < 0 || math.IsNaN(c.ConnectRate) || math.IsInf(c.ConnectRate, 0):
		return fmt.Errorf("--connect-rate %v: must be 0 (all at once) or positive", c.ConnectRate)
	case c.ConnectTimeout <= 0:
		return fmt.Errorf("--connect-timeout %v: must be positive", c.ConnectTimeout)
	case c.PerConn < 0:
		return fmt.Errorf("--per-conn %d: must be 0 (long-lived) or positive", c.PerConn)
	case c.PortsPerSource < 0:
		return fmt.Errorf("ports per source %d: must not be negative", c.PortsPerSource)
	}
	if err := c.validateWork(); err != nil {
		return err
	}
	if c.Idle && (c.App != AppEcho || c.PerConn != 0 || c.Rate != 0) {
		return errors.New("idle connections are echo's, long-lived and closed loop: drop --app, --per-conn and --rate")
	}
	if c.App == AppChat {
		if c.PerConn != 0 {
			return errors.New("--per-conn applies to echo; chat connections are long-lived")
		}
		if _, err := frame.ParseKind(string(c.Framing)); err != nil {
			return fmt.Errorf("--framing: %w", err)
		}
		if !validRoom(c.Room) {
			return fmt.Errorf("--room %q: 1 to 64 characters of A-Z a-z 0-9 _ -", c.Room)
		}
	}
	return nil
}

// validRoom follows the chat protocol's room names.
func validRoom(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
