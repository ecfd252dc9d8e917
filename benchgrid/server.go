package benchgrid

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/internal/cpupin"
	"github.com/tcplab/tcplab/internal/launch"
	"github.com/tcplab/tcplab/internal/procstat"
	"github.com/tcplab/tcplab/load"
)

const (
	// startTimeout bounds a server's start, from exec to answering.
	startTimeout = 10 * time.Second
	// stopTimeout is how long a server has to exit after SIGTERM before
	// it is killed.
	stopTimeout = 5 * time.Second
	// sampleEvery is how often the server's memory and threads are read
	// during the load.
	sampleEvery = 250 * time.Millisecond
)

// server is one `tcplab serve` process.
type server struct {
	*launch.Process
}

// startServer runs exe serve args... and waits until it reports ready
// (launch.Start: systemd's notification protocol). If the process exits
// first, the error is its last stderr line (serve's one-line error).
func (o *Options) startServer(args []string) (*server, error) {
	cmd := exec.Command(o.Exe, args...)
	cmd.Env = append(os.Environ(), o.Env...)
	lo := launch.Options{ReadyTimeout: startTimeout}
	if len(o.ServerCPUs) > 0 {
		lo.Start = func(cmd *exec.Cmd) error { return cpupin.StartPinned(cmd, o.ServerCPUs) }
	}
	p, err := launch.Start(cmd, lo)
	if ee := (*launch.EarlyExit)(nil); errors.As(err, &ee) {
		return nil, errors.New(ee.LastError)
	}
	if err != nil {
		return nil, err
	}
	return &server{p}, nil
}

// stop sends SIGTERM, then SIGKILL after stopTimeout, and waits. It
// returns an error if the server had to be killed or exited non-zero.
func (s *server) stop() error {
	return s.Stop(stopTimeout)
}

// ready checks that the server, which said it is ready, completes an
// application round trip: an echoed byte, the first bytes of a chat
// greeting, or of the reply to a work echo.
func (s *server) ready(app string) error {
	limit := time.Now().Add(startTimeout)
	c, err := net.DialTimeout("tcp", s.Addr, startTimeout)
	if err != nil {
		return fmt.Errorf("server at %s: %w", s.Addr, err)
	}
	defer c.Close()
	c.SetDeadline(limit)
	var probe []byte
	switch app {
	case load.AppEcho:
		probe = []byte{'?'}
	case load.AppWork:
		probe, _ = frame.Append(nil, frame.Length, 0, []byte("echo ?"))
	}
	if len(probe) > 0 {
		if _, err := c.Write(probe); err != nil {
			return fmt.Errorf("server at %s: %w", s.Addr, err)
		}
	}
	if _, err = io.ReadFull(c, make([]byte, 1)); err != nil {
		return fmt.Errorf("server at %s did not answer within %v: %w", s.Addr, startTimeout, err)
	}
	return nil
}

// sampler reads the server's process tree until stopped, keeping the
// peaks.
type sampler struct {
	pid  int
	stop chan struct{}
	done chan struct{}
	peak ServerCost
}

func startSampler(pid int) *sampler {
	sm := &sampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(sm.done)
		t := time.NewTicker(sampleEvery)
		defer t.Stop()
		for {
			sm.sample()
			select {
			case <-sm.stop:
				return
			case <-t.C:
			}
		}
	}()
	return sm
}

func (sm *sampler) sample() {
	s, err := procstat.Tree(sm.pid)
	if err != nil {
		return
	}
	sm.peak.PeakRSS = max(sm.peak.PeakRSS, s.PeakRSS)
	sm.peak.Threads = max(sm.peak.Threads, s.Threads)
	sm.peak.Procs = max(sm.peak.Procs, s.Procs)
}

// finish stops sampling, takes a last sample and returns the peaks.
func (sm *sampler) finish() ServerCost {
	close(sm.stop)
	<-sm.done
	sm.sample()
	return sm.peak
}

// runCell runs one cell, filling in its status, cause and numbers.
func (o *Options) runCell(ctx context.Context, c *Cell) {
	started := time.Now()
	defer func() { c.Seconds = time.Since(started).Seconds() }()
	w := o.workload(c.Workload)
	model, extra := w.serveModel(c.Model)
	args := []string{"serve", "--app", c.App, "--model", model, "--addr", "127.0.0.1:0",
		"--backlog", strconv.Itoa(c.Backlog), "--drain-timeout", "1s"}
	args = append(append(args, w.ServeArgs...), extra...)
	c.Serve = "tcplab " + strings.Join(args, " ")
	srv, err := o.startServer(args)
	if err != nil {
		c.Status, c.Cause = StatusSkipped, err.Error()
		return
	}
	defer func() {
		if err := srv.stop(); err != nil && c.Status == StatusOK {
			c.Status, c.Cause = StatusError, err.Error()
		}
	}()
	if err := srv.ready(c.App); err != nil {
		c.Status, c.Cause = StatusError, err.Error()
		return
	}
	pid := srv.Pid()
	if len(o.ServerCPUs) > 0 {
		// Children forked before now inherited the pinning already; this
		// is for any that were not.
		if err := cpupin.PinTree(pid, o.ServerCPUs); err != nil {
			c.Status, c.Cause = StatusError, err.Error()
			return
		}
	}
	if cpus, err := cpupin.Affinity(pid); err == nil {
		c.Server.CPUs = cpupin.FormatList(cpus)
	}
	before, err := procstat.Tree(pid)
	if err != nil {
		c.Status, c.Cause = StatusError, err.Error()
		return
	}
	sm := startSampler(pid)
	cfg := w.CellLoad(c.Clients, o.ShaRound)
	cfg.Addr = srv.Addr
	var idle procstat.Sample
	var idleErr error
	if cfg.Idle {
		cfg.OnIdle = func() { idle, idleErr = procstat.Tree(pid) }
	}
	res, err := load.Run(ctx, cfg)
	after, aerr := procstat.Tree(pid)
	cpus := c.Server.CPUs
	c.Server = sm.finish()
	c.Server.CPUs = cpus
	if err != nil {
		c.Status, c.Cause = StatusError, err.Error()
		return
	}
	c.Load, c.Status = res, StatusOK
	if aerr != nil {
		c.Status, c.Cause = StatusError, "server exited during the load: "+srv.LastError()
		return
	}
	c.Server.CPUSeconds = (after.CPU - before.CPU).Seconds()
	if res.Msgs > 0 {
		c.Server.CPUPerMsgUs = 1e6 * c.Server.CPUSeconds / float64(res.Msgs)
	}
	if cfg.Idle && idleErr == nil && idle.RSS > 0 {
		c.Server.BaseRSS, c.Server.IdleRSS = before.RSS, idle.RSS
		if res.OKConns > 0 {
			c.Server.RSSPerConn = float64(int64(idle.RSS)-int64(before.RSS)) / float64(res.OKConns)
		}
	}
	c.Server.Voluntary = after.Voluntary - min(after.Voluntary, before.Voluntary)
	c.Server.Involuntary = after.Involuntary - min(after.Involuntary, before.Involuntary)
}
