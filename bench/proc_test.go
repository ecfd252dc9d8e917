package bench

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/internal/launch"
	"github.com/tcplab/tcplab/internal/testkit"
)

// binDir holds the binaries the tests build, removed when they end.
var binDir string

type cleanupRunner struct{ m *testing.M }

func (r cleanupRunner) Run() int {
	defer os.RemoveAll(binDir)
	return r.m.Run()
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tcplab-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	binDir = dir
	goleak.VerifyTestMain(cleanupRunner{m})
}

var (
	buildOnce sync.Map // binary name -> *buildResult
)

type buildResult struct {
	once sync.Once
	path string
	err  error
}

// buildBinary builds a binary once per test run: "tcplab" from ./cmd/tcplab
// without the race detector (the memory figures must be the product's), or
// "cecho" from cecho.c with the system cc. It skips the test when cc is
// missing.
func buildBinary(t testing.TB, name string) string {
	t.Helper()
	path, err := tryBuild(name)
	if s, ok := err.(errSkip); ok {
		t.Skip(s.msg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// tryBuild is buildBinary returning its error: an errSkip when there is
// no C compiler.
func tryBuild(name string) (string, error) {
	v, _ := buildOnce.LoadOrStore(name, &buildResult{})
	r := v.(*buildResult)
	r.once.Do(func() {
		r.path = filepath.Join(binDir, name)
		var cmd *exec.Cmd
		switch name {
		case "tcplab":
			goBin, err := exec.LookPath("go")
			if err != nil {
				r.err = fmt.Errorf("no go command to build tcplab: %w", err)
				return
			}
			cmd = exec.Command(goBin, "build", "-o", r.path, "./cmd/tcplab")
			cmd.Dir = ".."
		case "cecho":
			cc, err := exec.LookPath("cc")
			if err != nil {
				r.err = errSkip{"no C compiler (cc) on this machine: skipping the C reference server"}
				return
			}
			cmd = exec.Command(cc, "-O2", "-o", r.path, "cecho.c")
		default:
			r.err = fmt.Errorf("unknown binary %q", name)
			return
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			r.err = fmt.Errorf("build %s: %w\n%s", name, err, out)
		}
	})
	return r.path, r.err
}

type errSkip struct{ msg string }

func (e errSkip) Error() string { return e.msg }

// child is a server running in its own process.
type child struct {
	p    *launch.Process
	Addr string
	Pid  int
}

// startServer runs a server binary (tcplab serve, or cecho: both report
// ready with the notification protocol, package launch) and stops it when
// the test ends. A model this machine cannot run (uring where the kernel
// refuses io_uring) skips the test. The base build of an A/B (baseEnv) may
// predate the notification: it listens on a port picked here instead of
// its "127.0.0.1:0", and is ready once that port accepts.
func startServer(t testing.TB, bin string, args ...string) *child {
	t.Helper()
	c, skip := tryServer(t, bin, args...)
	if skip != "" {
		t.Skip(skip)
	}
	return c
}

// tryServer is startServer returning, instead of skipping the test, why
// the model cannot run here.
func tryServer(t testing.TB, bin string, args ...string) (*child, string) {
	t.Helper()
	var opts launch.Options
	if base := os.Getenv(baseEnv); base != "" && bin == base {
		args = slices.Clone(args)
		i := slices.Index(args, "127.0.0.1:0")
		if i < 0 {
			t.Fatalf("%q: the base build needs --addr 127.0.0.1:0 to replace", args)
		}
		args[i] = freeAddr(t)
		opts.DialAddr = args[i]
	}
	p, err := testkit.TryServe(t, exec.Command(bin, args...), opts)
	if ee := (*launch.EarlyExit)(nil); errors.As(err, &ee) && strings.Contains(ee.Stderr, engine.ErrUnsupported.Error()) {
		return nil, "skipped: " + ee.LastError
	}
	if err != nil {
		t.Fatal(err)
	}
	return &child{p: p, Addr: p.Addr, Pid: p.Pid()}, ""
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Stop sends SIGTERM and waits for a clean exit.
func (c *child) Stop(t testing.TB) {
	t.Helper()
	if err := c.p.Stop(testkit.Bound); err != nil {
		t.Error(err)
	}
}

// RSS returns the process's resident set size in bytes.
func (c *child) RSS(t testing.TB) int64 { return c.status(t, "VmRSS") }

// PeakRSS returns the process's peak resident set size in bytes.
func (c *child) PeakRSS(t testing.TB) int64 { return c.status(t, "VmHWM") }

// status returns a size in bytes from /proc/PID/status.
func (c *child) status(t testing.TB, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field+":" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/PID/status", field)
	return 0
}

// FDs returns how many file descriptors the process has open.
func (c *child) FDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", c.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// CPU returns the process's user plus system CPU time so far, from
// /proc/PID/stat.
func (c *child) CPU(t testing.TB) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.Pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15 of the whole line, in clock ticks (100 per second
	// on Linux).
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("parse %s: %v %v", s, err1, err2)
	}
	return time.Duration(utime+stime) * time.Second / 100
}

// Pin moves every thread of the process to cpu. New threads inherit it.
func (c *child) Pin(t testing.TB, cpu int) { pinThreads(t, c.Pid, cpu) }

// pinThreads sets the CPU affinity of every thread of process pid.
func pinThreads(t testing.TB, pid, cpu int) {
	t.Helper()
	var set unix.CPUSet
	set.Set(cpu)
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		tid, _ := strconv.Atoi(e.Name())
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			t.Fatalf("pin thread %d to CPU %d: %v", tid, cpu, err)
		}
	}
}
