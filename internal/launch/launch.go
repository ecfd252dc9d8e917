// Package launch starts a server process and waits until it says it is
// ready, through systemd's notification protocol (package sdnotify): the
// one way tcplab's benchmark grid and its tests start `tcplab serve` (or
// the C reference server) and learn its address. Nothing here reads the
// server's log.
package launch

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tcplab/tcplab/internal/sdnotify"
)

// AddrVar and MetricsVar are the notification variables in which
// `tcplab serve` reports its bound address and its metrics URL, next to
// READY=1.
const (
	AddrVar    = "X_TCPLAB_ADDR"
	MetricsVar = "X_TCPLAB_METRICS"
)

// DefaultReadyTimeout bounds the wait for READY=1 when Options leaves it
// 0: a failure limit for a loaded machine, not a start-up target.
const DefaultReadyTimeout = 30 * time.Second

// keepOutput is how much of a process's stderr (its last bytes) a Process
// keeps for errors and for tests that read its warnings.
const keepOutput = 256 << 10

// Options tune Start.
type Options struct {
	// Start starts the command; nil means cmd.Start. (benchgrid starts
	// its servers already pinned to CPUs.)
	Start func(*exec.Cmd) error
	// ReadyTimeout bounds the wait for READY=1; 0 means
	// DefaultReadyTimeout. Past it the process is killed.
	ReadyTimeout time.Duration
	// DialAddr is for a server that does not speak the notification
	// protocol (a tcplab build from before it, in an A/B benchmark): the
	// address it was told to listen on. It is ready once a connection to
	// DialAddr succeeds, and Process.Addr is DialAddr.
	DialAddr string
	// StacksOnTimeout, for a Go process: past ReadyTimeout it gets SIGQUIT
	// first, and up to quitWait to print its goroutines' stacks to
	// stderr, which the error then carries (a test's failure then says
	// where the process was stuck). Off, the process is killed at once
	// and the error is one line.
	StacksOnTimeout bool
}

// quitWait is how long a process sent SIGQUIT (Options.StacksOnTimeout)
// gets to print its stacks and exit before it is killed.
const quitWait = 5 * time.Second

// Process is a server process that reported ready.
type Process struct {
	// Cmd is the started command.
	Cmd *exec.Cmd
	// Addr is the address the server reported (AddrVar).
	Addr string
	// Ready is the whole notification that carried READY=1.
	Ready sdnotify.State

	recv     *sdnotify.Receiver
	stderr   *tail
	exited   chan struct{} // closed once the process has been waited for
	waitErr  error
	notified chan struct{} // closed when the receiver goroutine ends

	mu    sync.Mutex
	later []sdnotify.State // notifications after READY=1
}

// Start runs cmd with NOTIFY_SOCKET set to a socket of its own and waits
// until the process sends READY=1, exits, or opts.ReadyTimeout passes. cmd
// must not have been started; its Stderr, if set, gets a copy of the
// process's stderr. A process that exits before it is ready gives an error
// carrying its last stderr line (tcplab's one-line error).
func Start(cmd *exec.Cmd, opts Options) (*Process, error) {
	recv, err := sdnotify.Listen()
	if err != nil {
		return nil, err
	}
	p := &Process{Cmd: cmd, recv: recv, stderr: &tail{max: keepOutput}, exited: make(chan struct{}), notified: make(chan struct{})}
	if cmd.Env == nil {
		cmd.Env = cmd.Environ()
	}
	cmd.Env = append(cmd.Env, sdnotify.Env+"="+recv.Socket())
	if cmd.WaitDelay == 0 {
		// A child of the server that outlives it (it should not) must not
		// hold Wait on the stderr pipe.
		cmd.WaitDelay = 5 * time.Second
	}
	if cmd.Stderr != nil {
		cmd.Stderr = io.MultiWriter(p.stderr, cmd.Stderr)
	} else {
		cmd.Stderr = p.stderr
	}
	start := opts.Start
	if start == nil {
		start = (*exec.Cmd).Start
	}
	if err := start(cmd); err != nil {
		recv.Close()
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	ready := make(chan sdnotify.State, 1)
	go p.receive(ready)
	if opts.DialAddr != "" {
		go p.dialUntilReady(opts.DialAddr, ready)
	}

	timeout := opts.ReadyTimeout
	if timeout == 0 {
		timeout = DefaultReadyTimeout
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case st := <-ready:
		p.Ready, p.Addr = st, st[AddrVar]
		return p, nil
	case <-p.exited:
		p.closeReceiver()
		return nil, &EarlyExit{Path: cmd.Path, Err: p.waitErr, LastError: p.LastError(), Stderr: p.Stderr()}
	case <-timer.C:
		if opts.StacksOnTimeout && cmd.Process.Signal(syscall.SIGQUIT) == nil {
			select {
			case <-p.exited:
			case <-time.After(quitWait):
			}
			p.Kill()
			return nil, fmt.Errorf("%s did not report ready (READY=1) within %v; its stderr after SIGQUIT:\n%s", cmd.Path, timeout, p.Stderr())
		}
		p.Kill()
		return nil, fmt.Errorf("%s did not report ready (READY=1) within %v: %s", cmd.Path, timeout, p.LastError())
	}
}

// EarlyExit is Start's error for a process that exited before it was
// ready.
type EarlyExit struct {
	Path string
	// Err is the exit status.
	Err error
	// LastError is the process's one-line error (Process.LastError).
	LastError string
	// Stderr is what it wrote to stderr (its last 256 KiB).
	Stderr string
}

func (e *EarlyExit) Error() string {
	return fmt.Sprintf("%s exited before it was ready (%v): %s", e.Path, e.Err, e.LastError)
}

// dialUntilReady connects to addr every 10 ms until it succeeds, then
// sends ready what READY=1 would have carried; it gives up when the
// process exits.
func (p *Process) dialUntilReady(addr string, ready chan<- sdnotify.State) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			select {
			case ready <- sdnotify.State{"READY": "1", AddrVar: addr}:
			default: // READY=1 came first
			}
			return
		}
		select {
		case <-p.exited:
			return
		case <-tick.C:
		}
	}
}

// receive reads notifications until the receiver is closed: the first with
// READY=1 goes to ready, the others are kept.
func (p *Process) receive(ready chan<- sdnotify.State) {
	defer close(p.notified)
	isReady := false
	for {
		st, err := p.recv.Next(time.Time{})
		if err != nil {
			return
		}
		if !isReady && st["READY"] == "1" {
			isReady = true
			select {
			case ready <- st:
			default: // a dial found the server ready first
			}
			continue
		}
		p.mu.Lock()
		p.later = append(p.later, st)
		p.mu.Unlock()
	}
}

// closeReceiver stops receiving once the process has exited: what it sent
// before it exited is read first.
func (p *Process) closeReceiver() {
	<-p.exited
	p.recv.Close()
	<-p.notified
}

// Notified reports whether a notification after READY=1 carried key=value
// (as STOPPING=1). Notifications sent before exit are all seen once Wait
// or Stop has returned.
func (p *Process) Notified(key, value string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, st := range p.later {
		if v, ok := st[key]; ok && v == value {
			return true
		}
	}
	return false
}

// Pid is the process id.
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Exited is closed once the process has exited and been waited for.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) error { return p.Cmd.Process.Signal(sig) }

// Wait waits up to bound for the process to exit and returns its exit
// error (nil for status 0). If it is still running after bound, Wait kills
// it and says so.
func (p *Process) Wait(bound time.Duration) error {
	timer := time.NewTimer(bound)
	defer timer.Stop()
	select {
	case <-p.exited:
	case <-timer.C:
		p.Kill()
		return fmt.Errorf("%s still running %v after it was asked to stop; killed: %s", p.Cmd.Path, bound, p.LastError())
	}
	p.closeReceiver()
	return p.waitErr
}

// Stop sends SIGTERM and waits as Wait does. It returns an error if the
// process exited non-zero or had to be killed.
func (p *Process) Stop(bound time.Duration) error {
	p.Signal(syscall.SIGTERM)
	err := p.Wait(bound)
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		return fmt.Errorf("%s exited: %v (%s)", p.Cmd.Path, err, p.LastError())
	}
	return err
}

// Kill kills the process and waits for it.
func (p *Process) Kill() {
	p.Cmd.Process.Kill()
	p.closeReceiver()
}

// ExitCode is the process's exit status once it has exited, or -1.
func (p *Process) ExitCode() int {
	select {
	case <-p.exited:
		return p.Cmd.ProcessState.ExitCode()
	default:
		return -1
	}
}

// Stderr is what the process wrote to stderr so far (its last 256 KiB).
func (p *Process) Stderr() string { return p.stderr.String() }

// LastError is the process's one-line error: its last stderr line, less
// tcplab's "tcplab: " prefix, or a description of its exit.
func (p *Process) LastError() string {
	lines := strings.Split(strings.TrimSpace(p.stderr.String()), "\n")
	if last := lines[len(lines)-1]; last != "" {
		return strings.TrimPrefix(last, "tcplab: ")
	}
	select {
	case <-p.exited:
		return fmt.Sprintf("exited: %v", p.waitErr)
	default:
		return "no output"
	}
}

// tail is a writer that keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
