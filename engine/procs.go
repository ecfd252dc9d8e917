package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// procGroup starts and reaps the child processes of the process models
// (fork, prefork): each child is this program re-executed with a socket on
// ChildFD and a ChildSpec in its environment (see child.go).
//
// Children are started from one goroutine locked to its OS thread for the
// group's whole life, because Linux sends the parent-death signal
// (Pdeathsig) when the thread that started a child exits, not the process:
// a Go thread can exit under a live child (when a goroutine locked to it,
// such as a thread-model connection, ends), which would kill the child.
// With the spawner's thread pinned, a child dies with the parent process,
// and no orphan outlives a crashed or killed parent.
type procGroup struct {
	model string
	env   []string
	// exited, if set, is called once per child after it is reaped.
	exited func(p *proc)

	spawnOnce sync.Once
	spawns    chan spawnReq
	quit      chan struct{} // closed by stop: the spawner returns
	quitOnce  sync.Once
	spawned   sync.WaitGroup // the spawner goroutine

	mu       sync.Mutex
	live     map[*proc]struct{}
	stopping bool
	reapers  sync.WaitGroup

	// totals sums the Stats the children report (childstats.go).
	totals childTotals
}

// proc is one child process.
type proc struct {
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{} // closed once the child is reaped
	err     error         // its exit status; read after done
}

type spawnReq struct {
	f     *os.File
	reply chan spawnResult
}

type spawnResult struct {
	p   *proc
	err error
}

// errStopping is returned by start once the group is stopping.
var errStopping = errors.New("server shutting down")

// selfExe is the running program. Through /proc it names the binary this
// process runs even if the file on disk was replaced or removed since.
const selfExe = "/proc/self/exe"

func newProcGroup(model string, cfg Config) (*procGroup, error) {
	if err := checkNotChild(); err != nil {
		return nil, err
	}
	env, err := childEnviron(model, cfg)
	if err != nil {
		return nil, err
	}
	return &procGroup{
		model:  model,
		env:    env,
		spawns: make(chan spawnReq),
		quit:   make(chan struct{}),
		live:   map[*proc]struct{}{},
		totals: childTotals{live: map[*proc]Stats{}},
	}, nil
}

// start starts a child serving f. The caller keeps f and closes it.
func (g *procGroup) start(f *os.File) (*proc, error) {
	g.mu.Lock()
	if g.stopping {
		g.mu.Unlock()
		return nil, errStopping
	}
	g.spawnOnce.Do(func() { g.spawned.Go(g.spawner) })
	g.mu.Unlock()
	reply := make(chan spawnResult, 1)
	select {
	case g.spawns <- spawnReq{f, reply}:
	case <-g.quit:
		return nil, errStopping
	}
	r := <-reply
	return r.p, r.err
}

// spawner starts every child, on its own locked thread (see procGroup). It
// returns when stop closes quit, after every child has been reaped, and
// only then unlocks the thread.
func (g *procGroup) spawner() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for {
		select {
		case req := <-g.spawns:
			p, err := g.spawn(req.f)
			req.reply <- spawnResult{p, err}
		case <-g.quit:
			return
		}
	}
}

func (g *procGroup) spawn(f *os.File) (*proc, error) {
	reports, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%s: a pipe for the child's stats: %w", g.model, err)
	}
	defer w.Close() // the child has its own copy
	pidfd := -1     // ours; os/exec keeps a copy of its own
	cmd := &exec.Cmd{
		Path:       selfExe,
		Args:       os.Args,
		Env:        g.env,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		ExtraFiles: []*os.File{f, w}, // ChildFD, ChildStatsFD
		// Its own process group: a Ctrl-C at the terminal reaches the
		// parent only, which then stops the children in order.
		SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true, PidFD: &pidfd},
	}
	// g.mu is held across Start so that stop sees every child it must
	// signal and wait for.
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopping {
		reports.Close()
		return nil, errStopping
	}
	if err := cmd.Start(); err != nil {
		reports.Close()
		return nil, fmt.Errorf("%s: starting a child process: %w", g.model, err)
	}
	p := &proc{cmd: cmd, started: time.Now(), done: make(chan struct{})}
	g.live[p] = struct{}{}
	g.reapers.Add(1)
	go g.reap(p, pidfd, reports)
	return p, nil
}

// reap reads the child's reports and waits for it to exit, so that it
// leaves no zombie and its last report counts.
func (g *procGroup) reap(p *proc, pidfd int, reports *os.File) {
	defer g.reapers.Done()
	read := make(chan struct{})
	go func() {
		defer close(read)
		g.totals.read(p, reports)
	}()
	if pidfd >= 0 {
		awaitExit(pidfd) // if it fails, Wait blocks instead
	}
	p.err = p.cmd.Wait()
	reports.SetReadDeadline(time.Now().Add(childStatsDrain))
	<-read
	g.mu.Lock()
	delete(g.live, p)
	g.mu.Unlock()
	close(p.done)
	if g.exited != nil {
		g.exited(p)
	}
}

// signal sends sig to every live child.
func (g *procGroup) signal(sig os.Signal) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for p := range g.live {
		p.cmd.Process.Signal(sig)
	}
}

// refuse makes every later start fail. When it returns no child is being
// started (spawn holds g.mu across exec), so the files passed to start are
// the caller's alone again.
func (g *procGroup) refuse() {
	g.mu.Lock()
	g.stopping = true
	g.mu.Unlock()
}

// stop starts no more children, asks every child to shut down (SIGTERM:
// each drains its connections and exits), and waits for them until
// deadline or until ctx is done. Children still running then are killed.
// stop returns once every child has been reaped and reports whether they
// all ended first.
func (g *procGroup) stop(ctx context.Context, deadline time.Time) bool {
	g.refuse()
	g.signal(syscall.SIGTERM)

	inTime := waitBy(ctx, &g.reapers, deadline, func() { g.signal(syscall.SIGKILL) })
	g.quitOnce.Do(func() { close(g.quit) })
	g.spawned.Wait()
	return inTime
}

// awaitExit returns once the process behind pidfd has exited, and closes
// pidfd. It waits parked in Go's poller: a wait system call would block an
// OS thread per live child, turning the parent into a thread-per-connection
// server of its own.
func awaitExit(pidfd int) error {
	if err := unix.SetNonblock(pidfd, true); err != nil {
		unix.Close(pidfd)
		return fmt.Errorf("pidfd: %w", err)
	}
	f := os.NewFile(uintptr(pidfd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("pidfd: %w", err)
	}
	// A pidfd turns readable when its process exits.
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		for {
			n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
			if err == unix.EINTR {
				continue
			}
			perr = err
			return err != nil || n > 0
		}
	})
	if err == nil {
		err = perr
	}
	if err != nil {
		return fmt.Errorf("pidfd: %w", err)
	}
	return nil
}
