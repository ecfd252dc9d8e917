package load

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcplab/tcplab/frame"
)

// The work protocol (Config.App AppWork, docs/work-protocol.md; the server
// is package app/work, which load does not import): each
// connection proves itself with one "echo" round trip, then sends its
// class's request over and over, closed loop or open loop as for echo
// (one request in flight per connection; Rate is shared by every
// connection, heavy ones included). The first Config.Heavy connections
// are the heavy class and send Config.HeavyWork; the others are the light
// class and send Config.Work. sha and echo requests carry a text of
// Config.Size bytes.
//
// Every reply is checked against the client's own computation (for sha,
// the same N rounds of SHA-256, done once per class before the run
// starts): a reply that differs ends its connection as a failure with
// reason "mismatch", an ERR or BYE with "err <code>" or "bye <code>".

// Kinds of work request, WorkSpec.Kind.
const (
	WorkEcho  = "echo"  // "echo TEXT": no work
	WorkSha   = "sha"   // "sha N TEXT": N rounds of SHA-256 (CPU)
	WorkSleep = "sleep" // "sleep US": the handler blocks (a synchronous call)
)

// MaxShaRounds bounds WorkSpec.Rounds: the client computes the rounds
// itself once per class to check the replies, and 100 million take it
// tens of seconds. The server's own limit (--max-sha) is usually lower.
const MaxShaRounds = 100_000_000

// MaxWorkSleep bounds WorkSpec.Sleep, the longest latency a histogram
// records. The server's own limit (--max-sleep) is usually lower.
const MaxWorkSleep = 10 * time.Minute

// WorkSpec is one kind of work request, as the flags --work and
// --heavy-work name it: "echo", "sha:N" (N rounds, 1 to MaxShaRounds) or
// "sleep:DURATION" (a Go duration in whole microseconds, 0 to
// MaxWorkSleep, such as "sleep:5ms"). The zero value is echo. It
// marshals to and from that text (the zero value to and from "").
type WorkSpec struct {
	// Kind is WorkEcho, WorkSha or WorkSleep; "" means WorkEcho.
	Kind string
	// Rounds is the sha request's N.
	Rounds int
	// Sleep is the sleep request's duration.
	Sleep time.Duration
}

// ParseWorkSpec parses "echo", "sha:N" or "sleep:DURATION". The error says
// what was wrong and what is wanted, without naming a flag.
func ParseWorkSpec(s string) (WorkSpec, error) {
	kind, arg, hasArg := strings.Cut(s, ":")
	var w WorkSpec
	switch kind {
	case WorkEcho:
		if hasArg {
			return w, fmt.Errorf("%q: echo takes no argument", s)
		}
		w.Kind = WorkEcho
	case WorkSha:
		n, err := strconv.Atoi(arg)
		if !hasArg || err != nil {
			return w, fmt.Errorf("%q: want sha:N, N rounds of SHA-256 from 1 to %d", s, MaxShaRounds)
		}
		w = WorkSpec{Kind: WorkSha, Rounds: n}
	case WorkSleep:
		d, err := time.ParseDuration(arg)
		if !hasArg || err != nil {
			return w, fmt.Errorf("%q: want sleep:DURATION, such as sleep:5ms", s)
		}
		w = WorkSpec{Kind: WorkSleep, Sleep: d}
	default:
		return w, fmt.Errorf("%q: want echo, sha:N or sleep:DURATION", s)
	}
	if err := w.check(); err != nil {
		return WorkSpec{}, fmt.Errorf("%q: %w", s, err)
	}
	return w, nil
}

// check reports a spec whose numbers are out of range.
func (w WorkSpec) check() error {
	switch w.Kind {
	case "", WorkEcho:
		if w.Rounds != 0 || w.Sleep != 0 {
			return errors.New("echo has no rounds or duration")
		}
	case WorkSha:
		if w.Rounds < 1 || w.Rounds > MaxShaRounds {
			return fmt.Errorf("sha rounds %d: want 1 to %d", w.Rounds, MaxShaRounds)
		}
	case WorkSleep:
		if w.Sleep < 0 || w.Sleep > MaxWorkSleep || w.Sleep%time.Microsecond != 0 {
			return fmt.Errorf("sleep %v: want whole microseconds from 0 to %v", w.Sleep, MaxWorkSleep)
		}
	default:
		return fmt.Errorf("kind %q: want echo, sha or sleep", w.Kind)
	}
	return nil
}

// String returns the spec as ParseWorkSpec reads it.
func (w WorkSpec) String() string {
	switch w.Kind {
	case WorkSha:
		return WorkSha + ":" + strconv.Itoa(w.Rounds)
	case WorkSleep:
		return WorkSleep + ":" + w.Sleep.String()
	}
	return WorkEcho
}

// MarshalText returns String's text, or nothing for the zero value (the
// default, which a Config of another app must keep).
func (w WorkSpec) MarshalText() ([]byte, error) {
	if w == (WorkSpec{}) {
		return nil, nil
	}
	return []byte(w.String()), nil
}

// UnmarshalText parses text with ParseWorkSpec; nothing is the zero value.
func (w *WorkSpec) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		*w = WorkSpec{}
		return nil
	}
	v, err := ParseWorkSpec(string(text))
	if err != nil {
		return err
	}
	*w = v
	return nil
}

// exchange returns the request payload for the spec, with text for sha and
// echo, and the reply payload the server must send. The reply is computed
// here, from the protocol (docs/work-protocol.md), not with the server's
// code (package app/work): a check that shared the server's code would
// share its bugs.
func (w WorkSpec) exchange(text []byte) (req, reply []byte) {
	switch w.Kind {
	case WorkSha:
		h := shaChain(w.Rounds, text)
		return fmt.Appendf(nil, "sha %d %s", w.Rounds, text), hex.AppendEncode([]byte("OK "), h[:])
	case WorkSleep:
		us := w.Sleep.Microseconds()
		return fmt.Appendf(nil, "sleep %d", us), fmt.Appendf(nil, "OK slept %d", us)
	}
	return append([]byte("echo "), text...), append([]byte("OK "), text...)
}

// shaChain is the work of "sha N TEXT": h1 = sha256(text), h(i+1) =
// sha256(h(i)); it returns hn.
func shaChain(n int, text []byte) [sha256.Size]byte {
	h := sha256.Sum256(text)
	for range n - 1 {
		h = sha256.Sum256(h[:])
	}
	return h
}

// calibrationRounds is the size of one timed batch in CalibrateSha: about
// 5 to 50 ms on current machines (more under the race detector).
const calibrationRounds = 50_000

// CalibrateSha returns how many rounds of "sha N TEXT" take about d of one
// core on this machine (at least 1), and the time one round took: a
// workload that wants requests of a given CPU cost sets WorkSpec.Rounds
// from it. It times 5 batches of rounds in this thread's CPU time and
// keeps the fastest; it takes a few tens of milliseconds. CPU time, not
// wall time: on a busy machine a batch waits for a CPU, and timed by the
// clock it would size requests for a fraction of d (seen on 2 cores at
// load average 24: 10 µs a round against 0.6 µs). The server's rounds
// cost the same only if it runs on the same machine and build (the race
// detector's is several times slower).
func CalibrateSha(d time.Duration) (rounds int, perRound time.Duration) {
	runtime.LockOSThread() // the thread whose CPU time is read
	defer runtime.UnlockOSThread()
	best := time.Duration(1<<63 - 1)
	var h [sha256.Size]byte
	for range 5 {
		start := threadCPU()
		h = shaChain(calibrationRounds, h[:])
		best = min(best, threadCPU()-start)
	}
	per := float64(max(best, 1)) / calibrationRounds
	return max(1, int(float64(d)/per)), time.Duration(per)
}

// threadCPU is the calling thread's CPU time so far, or the wall clock if
// the kernel cannot say.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return time.Duration(time.Now().UnixNano())
	}
	return time.Duration(ts.Nano())
}

// validateWork checks the work settings: only for AppWork, specs in range,
// Heavy from 0 to Conns with a HeavyWork when it is not 0.
func (c Config) validateWork() error {
	if c.App != AppWork {
		switch {
		case c.Work != WorkSpec{}:
			return errors.New("--work applies to --app work")
		case c.Heavy != 0:
			return errors.New("--heavy applies to --app work")
		case c.HeavyWork != WorkSpec{}:
			return errors.New("--heavy-work applies to --app work")
		}
		return nil
	}
	if err := c.Work.check(); err != nil {
		return fmt.Errorf("--work: %w", err)
	}
	if err := c.HeavyWork.check(); err != nil {
		return fmt.Errorf("--heavy-work: %w", err)
	}
	switch {
	case c.Heavy < 0 || c.Heavy > c.Conns:
		return fmt.Errorf("--heavy %d: must be 0 to --conns (%d)", c.Heavy, c.Conns)
	case c.Heavy > 0 && c.HeavyWork == WorkSpec{}:
		return fmt.Errorf("--heavy %d needs --heavy-work (echo, sha:N or sleep:DURATION)", c.Heavy)
	case c.Heavy == 0 && c.HeavyWork != WorkSpec{}:
		return errors.New("--heavy-work needs --heavy K, the connections that send it")
	case c.Size > frame.DefaultMax-64:
		return fmt.Errorf("--size %d: a work request's text must fit a frame: at most %d", c.Size, frame.DefaultMax-64)
	}
	return nil
}

// WorkSpecs are a work run's requests, Result.Work.
type WorkSpecs struct {
	// Light is the light connections' request (Config.Work).
	Light string `json:"light"`
	// Heavy is the heavy connections' request (Config.HeavyWork), empty
	// when HeavyConns is 0.
	Heavy string `json:"heavy,omitempty"`
	// HeavyConns is Config.Heavy.
	HeavyConns int `json:"heavy_conns"`
}

// Classes are a work run's numbers per class of connection, Result.Classes.
// The run's totals (Result.Msgs, Result.Latency, ...) cover both classes
// and each connection's proving echo; a class counts only its own
// requests.
type Classes struct {
	Light Class `json:"light"`
	Heavy Class `json:"heavy"`
}

// Class is one class of connection's requests and their latency.
type Class struct {
	// Spec is the class's request, as WorkSpec.String gives it; empty
	// for a class without connections.
	Spec string `json:"spec,omitempty"`
	// Conns is how many connection slots send it.
	Conns int `json:"conns"`
	// Msgs counts the replies received (checked), MsgsPerS over
	// Result.Window.
	Msgs     uint64  `json:"msgs"`
	MsgsPerS float64 `json:"msgs_per_s"`
	// Latency and LatencyUncorrected are as Result's, in microseconds.
	Latency            Percentiles `json:"latency_us"`
	LatencyUncorrected Percentiles `json:"latency_uncorrected_us"`
}

// proofText is the text of the echo that proves a work connection.
const proofText = "tcplab-load"

// workRun is a work run's requests, expected replies and class recorders,
// made before the run starts.
type workRun struct {
	proof, proofWant []byte // the proving echo's frame and its reply's payload
	classes          [2]*workClass
}

// workClass is one class: its request frame, the reply payload it must
// get, and the recorder of its latencies (nil for an empty class).
type workClass struct {
	spec      WorkSpec
	conns     int
	req, want []byte
	rec       *recorder
}

const (
	lightClass = 0
	heavyClass = 1
)

// newWorkRun builds the requests and computes their replies: for sha, the
// rounds themselves.
func newWorkRun(cfg Config) *workRun {
	text := make([]byte, cfg.Size)
	for i := range text {
		text[i] = proofText[i%len(proofText)]
	}
	proof, proofWant := WorkSpec{}.exchange([]byte(proofText))
	w := &workRun{proof: appendFrame(nil, proof), proofWant: proofWant}
	for k, spec := range [2]WorkSpec{cfg.Work, cfg.HeavyWork} {
		conns := cfg.Conns - cfg.Heavy
		if k == heavyClass {
			conns = cfg.Heavy
		}
		cl := &workClass{spec: spec, conns: conns}
		if conns > 0 {
			req, want := spec.exchange(text)
			// A class's histograms are merged after the run: a few shards
			// keep that quick.
			cl.req, cl.want, cl.rec = appendFrame(nil, req), want, newRecorder(min(conns, 4))
		}
		w.classes[k] = cl
	}
	return w
}

// appendFrame frames a request payload; requests always fit.
func appendFrame(dst, payload []byte) []byte {
	out, err := frame.Append(dst, frame.Length, 0, payload)
	if err != nil {
		panic("load: work request does not fit a frame: " + err.Error()) // Validate bounds Size
	}
	return out
}

// newExchanger returns slot i's exchanger: heavy for the first Heavy slots.
func (w *workRun) newExchanger(r *run, i int) exchanger {
	cl := w.classes[lightClass]
	if i < r.cfg.Heavy {
		cl = w.classes[heavyClass]
	}
	return &workExchanger{w: w, cl: cl, total: r.rec.batch(i), class: cl.rec.batch(i)}
}

// workExchanger is one slot's side of the work protocol.
type workExchanger struct {
	w            *workRun
	cl           *workClass
	fr           *frame.Reader // the current connection's
	total, class *batch
}

// roundTrip sends the proving echo on a new connection (first), else the
// class's request, and checks the reply.
func (e *workExchanger) roundTrip(c *conn, first bool) (int, error) {
	req, want := e.cl.req, e.cl.want
	if first {
		fr, err := frame.NewReader(c, frame.Length, 0)
		if err != nil {
			return 0, err
		}
		e.fr, req, want = fr, e.w.proof, e.w.proofWant
	}
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	p, err := e.fr.Next()
	if err != nil {
		return 0, err
	}
	return len(p), checkReply(p, want)
}

// checkReply compares a reply with the one expected: an ERR or BYE is the
// server's error, another OK a mismatch, anything else a protocol error.
func checkReply(p, want []byte) error {
	if bytes.Equal(p, want) {
		return nil
	}
	switch f := parseServerFrame(p); f.verb {
	case "ERR", "BYE":
		return serverError{f.verb, f.a}
	case "OK":
		return fmt.Errorf("%w: reply %q, want %q", errMismatch, clip(p), clip(want))
	}
	return fmt.Errorf("%w: reply %q, want %q", errProtocol, clip(p), clip(want))
}

// record adds a completed exchange to the totals and, unless it proved the
// connection, to the class.
func (e *workExchanger) record(at, fromDue, fromSent time.Duration, size int, first bool) {
	e.total.add(at, fromDue, fromSent, size)
	if !first {
		e.class.add(at, fromDue, fromSent, size)
	}
}

func (e *workExchanger) flush() {
	e.total.flush()
	e.class.flush()
}

// fill adds the work settings and the classes to res; secs is the window.
func (w *workRun) fill(res *Result, cfg Config) {
	res.Work = &WorkSpecs{Light: cfg.Work.String(), HeavyConns: cfg.Heavy}
	if cfg.Heavy > 0 {
		res.Work.Heavy = cfg.HeavyWork.String()
	}
	res.Classes = &Classes{Light: w.classes[lightClass].result(res.Window), Heavy: w.classes[heavyClass].result(res.Window)}
}

func (cl *workClass) result(secs float64) Class {
	c := Class{Conns: cl.conns}
	if cl.rec == nil {
		return c
	}
	c.Spec = cl.spec.String()
	c.Msgs = cl.rec.msgs.Load()
	if secs > 0 {
		c.MsgsPerS = float64(c.Msgs) / secs
	}
	c.Latency, c.LatencyUncorrected = cl.rec.merged()
	return c
}

// workSummary adds the classes' lines to a summary.
func (res *Result) workSummary(b *strings.Builder) {
	if res.Classes == nil {
		return
	}
	for _, c := range []struct {
		name string
		c    Class
	}{{"light", res.Classes.Light}, {"heavy", res.Classes.Heavy}} {
		if c.c.Conns == 0 {
			continue
		}
		p := c.c.Latency
		fmt.Fprintf(b, "\n%-12s %s x %d conns: %.0f msgs/s  p50 %s  p90 %s  p99 %s  p99.9 %s  max %s",
			c.name, c.c.Spec, c.c.Conns, c.c.MsgsPerS, us(p.P50), us(p.P90), us(p.P99), us(p.P999), us(p.Max))
	}
}
