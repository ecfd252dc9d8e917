package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcplab/tcplab/handler"
)

// The process models serve in child processes, so their counters live
// there. Each child reports its Stats to the parent over a pipe it
// inherits on ChildStatsFD: one JSON object a line, every
// childStatsEvery while it serves and once more when it stops. The parent
// keeps the latest report of every live child and the last of every child
// that has exited, and its Stats sums them: a fork or prefork server's
// Stats, and so its metrics, count what its children did, up to
// childStatsEvery late.

const (
	// ChildStatsFD is the descriptor a fork or prefork child reports its
	// Stats to its parent on (exec.Cmd.ExtraFiles[1]).
	ChildStatsFD = 4
	// childStatsEvery is how often a serving child reports.
	childStatsEvery = 200 * time.Millisecond
	// childStatsDrain bounds how long the parent waits, once a child has
	// exited, for the rest of its reports: only a descendant that kept the
	// pipe open could make it wait at all.
	childStatsDrain = time.Second
)

// childTotals sums the Stats that a process model's children report.
type childTotals struct {
	mu      sync.Mutex
	live    map[*proc]Stats
	retired Stats // the last reports of the children that exited
}

// read records p's reports from r until the child closes its end or the
// deadline set on r passes; then it folds the last one into the retired
// total. It closes r.
func (t *childTotals) read(p *proc, r *os.File) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var st Stats
		if json.Unmarshal(sc.Bytes(), &st) != nil {
			continue // not a report: ignore it rather than trust it
		}
		t.mu.Lock()
		t.live[p] = st
		t.mu.Unlock()
	}
	// A line too long to be a report stops the scanner: keep draining, so
	// the child never blocks on a full pipe.
	io.Copy(io.Discard, r)
	t.mu.Lock()
	last := t.live[p]
	delete(t.live, p)
	last.Open = 0 // an exited child has no connection open
	addStats(&t.retired, last, true)
	t.mu.Unlock()
}

// sum returns the children's totals. With conns unset it leaves out what a
// fork parent counts itself (accepts, refusals, open connections).
func (t *childTotals) sum(conns bool) Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	var st Stats
	addStats(&st, t.retired, conns)
	for _, s := range t.live {
		addStats(&st, s, conns)
	}
	return st
}

// addStats adds src's counters to dst: all of them, or with conns unset
// only those about traffic (bytes, overflows, timeouts, handshakes,
// offloaded functions, stalls, the app's counts).
func addStats(dst *Stats, src Stats, conns bool) {
	dst.Overflows += src.Overflows
	dst.BytesIn += src.BytesIn
	dst.BytesOut += src.BytesOut
	dst.FrameTimeouts += src.FrameTimeouts
	dst.WriteTimeouts += src.WriteTimeouts
	dst.HandshakeErrors += src.HandshakeErrors
	dst.Offloads += src.Offloads
	dst.OffloadPanics += src.OffloadPanics
	dst.Stalls += src.Stalls
	dst.StallTime += src.StallTime
	dst.ChildApp.FramesIn += src.ChildApp.FramesIn
	dst.ChildApp.FramesOut += src.ChildApp.FramesOut
	dst.ChildApp.RateLimited += src.ChildApp.RateLimited
	if !conns {
		return
	}
	dst.Accepted += src.Accepted
	dst.Open += src.Open
	dst.Refused += src.Refused
	dst.AcceptErrors += src.AcceptErrors
	for k, v := range src.RefusedBy {
		if dst.RefusedBy == nil {
			dst.RefusedBy = map[string]uint64{}
		}
		dst.RefusedBy[k] += v
	}
}

// reportingServer is a child's Server: it reports the Stats of the server
// it wraps to the parent while Serve runs, and once more after Serve and
// after Shutdown return.
type reportingServer struct {
	Server
	app handler.Counter // the child's handler, if it counts
	mu  sync.Mutex
	w   *os.File
}

// reportTo wraps srv so that it reports to the parent on ChildStatsFD,
// with h's counts as Stats.ChildApp if h is a handler.Counter. If that
// descriptor is not a pipe (a child started by hand, say), srv is returned
// as it is.
func reportTo(srv Server, h handler.Handler, model string) Server {
	var st unix.Stat_t
	if unix.Fstat(ChildStatsFD, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return srv
	}
	unix.CloseOnExec(ChildStatsFD) // for the parent only, not for programs this child runs
	app, _ := h.(handler.Counter)
	return &reportingServer{Server: srv, app: app, w: os.NewFile(ChildStatsFD, "stats pipe to the "+model+" parent")}
}

// Serve serves, reporting every childStatsEvery.
func (r *reportingServer) Serve() error {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(childStatsEvery)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				r.report()
			case <-stop:
				return
			}
		}
	}()
	err := r.Server.Serve()
	close(stop)
	<-done
	r.report()
	return err
}

// Shutdown shuts the server down, then reports its final counts.
func (r *reportingServer) Shutdown(ctx context.Context) error {
	err := r.Server.Shutdown(ctx)
	r.report()
	return err
}

// report writes one line: the current Stats. A line is far below the
// pipe's atomic write size. A parent that is gone is not an error worth
// more than silence: the child is about to be killed with it.
func (r *reportingServer) report() {
	st := r.Server.Stats()
	if r.app != nil {
		st.ChildApp = r.app.Counts()
	}
	b, err := json.Marshal(st)
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.w.Write(append(b, '\n'))
}
