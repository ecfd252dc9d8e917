package benchgrid

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tcplab/tcplab/internal/cpupin"
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

// servingLine is the log line `tcplab serve` prints once it listens.
var servingLine = regexp.MustCompile(`msg=serving .*addr=(\S+)`)

// server is one `tcplab serve` process.
type server struct {
	cmd     *exec.Cmd
	addr    string
	exited  chan struct{} // closed when the process has been waited for
	waitErr error
	mu      sync.Mutex
	tail    []string // the last lines of its stderr
}

// startServer runs exe serve args... and waits until it prints its
// address. If the process exits first, the error is its last stderr line
// (serve's one-line error).
func (o *Options) startServer(args []string) (*server, error) {
	cmd := exec.Command(o.Exe, args...)
	cmd.Env = append(os.Environ(), o.Env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	if len(o.ServerCPUs) > 0 {
		err = cpupin.StartPinned(cmd, o.ServerCPUs)
	} else {
		err = cmd.Start()
	}
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", o.Exe, err)
	}
	s := &server{cmd: cmd, exited: make(chan struct{})}
	addrc := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		lines := bufio.NewScanner(stderr)
		for lines.Scan() {
			line := lines.Text()
			s.mu.Lock()
			s.tail = append(s.tail, line)
			if len(s.tail) > 20 {
				s.tail = s.tail[1:]
			}
			s.mu.Unlock()
			if m := servingLine.FindStringSubmatch(line); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() {
		<-scanned // Wait closes the pipe: read it all first
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	select {
	case s.addr = <-addrc:
		return s, nil
	case <-s.exited:
		return nil, errors.New(s.lastError())
	case <-time.After(startTimeout):
		s.stop()
		return nil, fmt.Errorf("serve did not report its address within %v", startTimeout)
	}
}

// lastError is the server's one-line error, or a description of its exit.
func (s *server) lastError() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.tail) - 1; i >= 0; i-- {
		if msg, ok := strings.CutPrefix(s.tail[i], "tcplab: "); ok {
			return msg
		}
	}
	if len(s.tail) > 0 {
		return s.tail[len(s.tail)-1]
	}
	return fmt.Sprintf("serve exited: %v", s.waitErr)
}

// stop sends SIGTERM, then SIGKILL after stopTimeout, and waits. It
// returns an error if the server had to be killed or exited non-zero.
func (s *server) stop() error {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("serve ignored SIGTERM for %v and was killed", stopTimeout)
	}
	if s.waitErr != nil {
		return fmt.Errorf("serve exited: %v (%s)", s.waitErr, s.lastError())
	}
	return nil
}

// ready waits until the server completes an application round trip: an
// echoed byte, or the first bytes of a chat greeting.
func (s *server) ready(app string) error {
	limit := time.Now().Add(startTimeout)
	var last error
	for time.Now().Before(limit) {
		if last = probe(s.addr, app, limit); last == nil {
			return nil
		}
		select {
		case <-s.exited:
			return errors.New(s.lastError())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("server at %s did not answer within %v: %v", s.addr, startTimeout, last)
}

func probe(addr, app string, limit time.Time) error {
	c, err := net.DialTimeout("tcp", addr, time.Until(limit))
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(limit)
	if app == load.AppEcho {
		if _, err := c.Write([]byte{'?'}); err != nil {
			return err
		}
	}
	_, err = io.ReadFull(c, make([]byte, 1))
	return err
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
	args := []string{"serve", "--app", c.App, "--model", c.Model, "--addr", "127.0.0.1:0",
		"--backlog", strconv.Itoa(c.Backlog), "--drain-timeout", "1s"}
	args = append(args, w.ServeArgs...)
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
	pid := srv.cmd.Process.Pid
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
	cfg := w.Load
	cfg.Addr, cfg.App, cfg.Conns = srv.addr, c.App, c.Clients
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
		c.Status, c.Cause = StatusError, "server exited during the load: "+srv.lastError()
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
