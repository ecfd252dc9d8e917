package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/internal/launch"
	"github.com/tcplab/tcplab/internal/testkit"
)

// TestMain lets a test run this binary as the tcplab command: with
// TCPLAB_TEST_MAIN=1 in its environment it is main, not the tests (and
// with uringtest.Environment set too, main in a process where the kernel
// refuses io_uring).
func TestMain(m *testing.M) {
	if os.Getenv("TCPLAB_TEST_MAIN") == "1" {
		lowerNofile() // TestOutOfDescriptors: a small RLIMIT_NOFILE for this process only
		denyIOUringIfAsked()
		main()
		return
	}
	goleak.VerifyTestMain(m)
}

// runCmd runs the tcplab command line args in-process and returns its
// exit code and output. A command still running after a minute (a serve
// that should have refused its flags) is stopped as by a signal.
func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code = run(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestBadInputExits2WithOneLine(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--no-such-flag"},
		{"serve", "--model", "no-such-model"},
		{"serve", "--app", "no-such-app"},
		{"serve", "--addr", "not-an-address"},
		{"serve", "--workers", "0", "--model", "goroutine"},
		{"serve", "--addr", "127.0.0.1:0", "--write-timeout", "0"},
		{"serve", "--addr", "127.0.0.1:0", "--write-timeout", "-1s"},
		{"serve", "--addr", "127.0.0.1:0", "--drain-timeout", "-1s"},
		{"no-such-command"},
		{"serve", "stray-argument"},
		{"load", "--conns", "0"},
		{"load", "--duration", "0s"},
		{"bench", "--duration", "0s"},
		{"load", "--app", "smtp"},
		{"load", "--rate", "-5"},
		{"load", "--framing", "line"},
		{"load", "--app", "chat", "--per-conn", "3"},
		{"bench", "--app", "chat", "--senders", "-1"},
		{"load", "--conns", "10000", "--size", "1048576"},
		{"bench", "--clients", "10,10000", "--size", "1048576"},
		{"load", "--addr", "no-port"},
		{"load", "--addr", "127.0.0.1:99999"},
		{"load", "--addr", "127.0.0.1:0"},
		{"serve", "--addr", "127.0.0.1:99999"},
		{"serve", "--addr", "127.0.0.1:-1"},
		{"serve", "--addr", "127.0.0.1:no-such-service"},
		{"chat", "--addr", "127.0.0.1:99999"},
		{"chat", "--addr", "127.0.0.1:0"},
		{"bench", "--models", "no-such-model"},
		{"bench", "--pin", "0"},
		{"bench", "--pin", "0:1000"},
		{"bench", "--pin", "x:1"},
		{"bench", "--quick", "--seed-grid"},
		{"bench", "--seed-grid", "--app", "echo"},
		{"bench", "--workload", "no-such-workload"},
		{"bench", "--workload", "echo,echo"},
		{"bench", "--app", "chat", "--workload", "echo"},
		{"bench", "--quick", "--full"},
		{"bench", "--repeat", "0"},
		{"bench", "--workload", "idle", "--rate", "100"},
		{"bench", "--clients", "0"},
		{"bench", "--duration", "-1s"},
		{"doctor", "extra"},
	} {
		code, _, stderr := runCmd(t, args...)
		if code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
		if lines := strings.Split(strings.TrimSpace(stderr), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "tcplab: ") {
			t.Errorf("%q: stderr %q, want one line starting with \"tcplab: \"", args, stderr)
		}
	}
}

// TestBadFlagIsTheOneNamed: an error names the flag that is wrong, not
// one derived from it.
func TestBadFlagIsTheOneNamed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		// Should one run, it is short and finds nothing at port 1.
		{[]string{"load", "--app", "chat", "--senders", "-1"}, "--senders -1"},
		{[]string{"load", "--addr", "127.0.0.1:1", "--duration", "100ms", "--senders", "3"}, "--senders applies to --app chat"},
		{[]string{"load", "--addr", "127.0.0.1:1", "--duration", "100ms", "--room", "dev"}, "--room applies to --app chat"},
	} {
		code, _, stderr := runCmd(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	// bench's are checked without running the grid.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--workload", "echo", "--senders", "3"}, "--senders applies to --app chat"},
		{[]string{"--app", "chat", "--clients", "20,5", "--senders", "10"}, "smallest --clients (5)"},
	} {
		_, err := optionsFor(tc.args...)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bench %q: %v; want a usage error with %q", tc.args, err, tc.want)
		}
	}
}

func TestModelsListsEveryModelOnePerLine(t *testing.T) {
	code, out, _ := runCmd(t, "models")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	models := engine.Models()
	if len(lines) != len(models) {
		t.Fatalf("%d lines for %d models:\n%s", len(lines), len(models), out)
	}
	for i, m := range models {
		if f := strings.Fields(lines[i]); len(f) < 2 || f[0] != m.Name {
			t.Errorf("line %q does not start with the model name %q and a description", lines[i], m.Name)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCmd(t, "version")
	if code != 0 || !strings.HasPrefix(out, "tcplab "+version) {
		t.Fatalf("exit %d, output %q", code, out)
	}
	code, flag, stderr := runCmd(t, "--version")
	if code != 0 || flag != out || stderr != "" {
		t.Errorf("--version: exit %d, output %q, stderr %q; want `tcplab version`'s %q", code, flag, stderr, out)
	}
}

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serveCmd is this test binary as the command "tcplab serve args...",
// with env added to its environment.
func serveCmd(args []string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], append([]string{"serve"}, args...)...)
	cmd.Env = append(append(os.Environ(), "TCPLAB_TEST_MAIN=1"), env...)
	return cmd
}

// serve runs "tcplab serve args..." in a child process and returns it once
// it reports ready (testkit.Serve). It is stopped when the test ends if
// the test did not stop it; its log is Stderr().
func serve(t *testing.T, args ...string) *launch.Process {
	t.Helper()
	return testkit.Serve(t, serveCmd(args))
}

// stop stops a server as SIGTERM does and requires a clean exit (0).
func stop(t *testing.T, s *launch.Process) {
	t.Helper()
	if err := s.Stop(testkit.Bound); err != nil {
		t.Fatal(err)
	}
}

// echoConn connects to the echo server at addr, sees msg echoed and
// returns the connection, open until the test ends, with a deadline
// testkit.Bound away.
func echoConn(t *testing.T, addr, msg string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, testkit.Bound)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testkit.Bound))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo: %q, %v", got, err)
	}
	return c
}

// echoOnce sees msg echoed on a new connection to addr, then closes it.
func echoOnce(t *testing.T, addr, msg string) { echoConn(t, addr, msg).Close() }

func TestServeEchoesAndStopsCleanly(t *testing.T) {
	s := serve(t, "--addr", "127.0.0.1:0", "--model", "goroutine")
	echoOnce(t, s.Addr, "hello\n")
	stop(t, s)
}

// TestServeWarnsAboutIgnoredFlagAndWildcardBind: each warning is one
// line at level WARN, which says it is a warning once (not
// `level=WARN msg="warning: ..."`).
func TestServeWarnsAboutIgnoredFlagAndWildcardBind(t *testing.T) {
	s := serve(t, "--addr", "0.0.0.0:0", "--model", "seq", "--workers", "3", "--backlog", "1000000")
	_, port, _ := net.SplitHostPort(s.Addr)
	echoOnce(t, net.JoinHostPort("127.0.0.1", port), "x")
	stop(t, s)
	out := s.Stderr()
	for what, re := range map[string]string{
		"binding every interface":    `level=WARN msg="listening on every interface;`,
		"the ignored --workers flag": `level=WARN msg="flag does not apply to this model; ignored" flag=--workers model=seq`,
		"the backlog over somaxconn": `level=WARN msg="requested listen backlog exceeds net.core.somaxconn;`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("no warning about %s in:\n%s", what, out)
		}
	}
	if strings.Contains(strings.ToLower(out), `msg="warning`) {
		t.Errorf("a WARN line says warning again:\n%s", out)
	}
}

// TestDrainTimeoutZeroWarnsOnlyWhenItCutsConnections stops a server with
// --drain-timeout 0 twice: with no connection open there is nothing to
// warn about; with one open, it was cut off.
func TestDrainTimeoutZeroWarnsOnlyWhenItCutsConnections(t *testing.T) {
	const warning = "drain timeout reached"
	s := serve(t, "--addr", "127.0.0.1:0", "--drain-timeout", "0")
	if err := s.Stop(testkit.Bound); err != nil || strings.Contains(s.Stderr(), warning) {
		t.Errorf("no connections: %v, log:\n%s", err, s.Stderr())
	}

	s = serve(t, "--addr", "127.0.0.1:0", "--drain-timeout", "0")
	echoConn(t, s.Addr, "x") // the server has it open
	if err := s.Stop(testkit.Bound); err != nil || !strings.Contains(s.Stderr(), warning) {
		t.Errorf("one connection: %v, log:\n%s", err, s.Stderr())
	}
}

func TestServeDefaultsToLoopback(t *testing.T) {
	cmd := newServeCmd()
	if got := cmd.Flags().Lookup("addr").DefValue; got != "127.0.0.1:7000" {
		t.Fatalf("default --addr %q", got)
	}
	if got := cmd.Flags().Lookup("backlog").DefValue; got != "1024" {
		t.Fatalf("default --backlog %q", got)
	}
}

// TestSIGTERMDrainsAndExitsZero runs the real binary, keeps a client
// connected, sends SIGTERM, and expects the client's connection to end and
// the process to exit 0.
func TestSIGTERMDrainsAndExitsZero(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			s := serve(t, "--addr", "127.0.0.1:0", "--drain-timeout", "2s")
			echoOnce(t, s.Addr, "before")
			c := echoConn(t, s.Addr, "x")
			if err := s.Signal(sig); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(testkit.Bound))
			if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
				t.Errorf("client still connected after %v: (%d, %v)", sig, n, err)
			}
			if err := s.Wait(testkit.Bound); err != nil {
				t.Fatalf("exit after %v: %v", sig, err)
			}
		})
	}
}
