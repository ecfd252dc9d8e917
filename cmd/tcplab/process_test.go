package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcplab/tcplab/conformance"
)

// serveBinary runs this test binary as "tcplab serve --addr 127.0.0.1:0
// args..." in a child process, and returns it once it has logged its
// address. The process is killed when the test ends if it still runs.
func serveBinary(t *testing.T, args ...string) (cmd *exec.Cmd, addr string) {
	t.Helper()
	cmd = exec.Command(os.Args[0], append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "TCPLAB_TEST_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	lines := bufio.NewScanner(stderr)
	for addr == "" && lines.Scan() {
		if m := servingAddr.FindStringSubmatch(lines.Text()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatal("tcplab serve never reported its address")
	}
	go io.Copy(io.Discard, stderr) // ends when Wait closes the pipe
	return cmd, addr
}

// waitExit waits for cmd to exit, at most bound, and returns its error.
func waitExit(t *testing.T, cmd *exec.Cmd, bound time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(bound):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%v still running %v after it was asked to stop", cmd.Args, bound)
		return nil
	}
}

// liveChildren waits until pid has n live children and returns them.
func liveChildren(t *testing.T, pid, n int) []conformance.Proc {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		kids, err := conformance.Children(pid)
		if err != nil {
			t.Fatal(err)
		}
		kids = slices.DeleteFunc(kids, func(p conformance.Proc) bool { return p.State == "Z" })
		if len(kids) == n {
			return kids
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d has children %v, want %d", pid, kids, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPreforkSIGTERMStopsEveryWorkerAndExitsZero runs "tcplab serve --model
// prefork" as a process, keeps a client connected, sends SIGTERM to the
// parent, and expects the client's connection to end, the parent to exit
// 0, and no worker to remain.
func TestPreforkSIGTERMStopsEveryWorkerAndExitsZero(t *testing.T) {
	cmd, addr := serveBinary(t, "--model", "prefork", "--workers", "2", "--drain-timeout", "2s")
	liveChildren(t, cmd.Process.Pid, 2)
	echoOnce(t, addr, "before")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	echoOn(t, c, "held")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("client still connected after SIGTERM: (%d, %v)", n, err)
	}
	if err := waitExit(t, cmd, 10*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	conformance.CheckNoStrays(t, 5*time.Second)
}

// TestProcessModelChildrenDieWithTheirParent SIGKILLs a fork or prefork
// parent, which gets no chance to stop its children, and checks that they
// die with it (Pdeathsig): no orphan is left serving.
func TestProcessModelChildrenDieWithTheirParent(t *testing.T) {
	for _, model := range []string{"fork", "prefork"} {
		t.Run(model, func(t *testing.T) {
			cmd, addr := serveBinary(t, "--model", model, "--workers", "2")
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			echoOn(t, c, "served by a child")
			want := 1 // fork: the child serving c
			if model == "prefork" {
				want = 2
			}
			liveChildren(t, cmd.Process.Pid, want)
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			waitExit(t, cmd, 10*time.Second)
			conformance.CheckNoStrays(t, 5*time.Second)
			if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
				t.Errorf("client still served after its server's parent was killed: (%d, %v)", n, err)
			}
		})
	}
}

// TestModelsShowsTheCaps checks that "tcplab models" lists the thread,
// pool, fork and prefork models with the flags that set their caps.
func TestModelsShowsTheCaps(t *testing.T) {
	code, out, _ := runCmd(t, "models")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	caps := map[string][]string{
		"thread":  {"--max-threads", "4096"},
		"pool":    {"--workers", "--queue", "1024"},
		"fork":    {"--max-procs", "256"},
		"prefork": {"--workers"},
	}
	for model, words := range caps {
		line := ""
		for l := range strings.Lines(out) {
			if f := strings.Fields(l); len(f) > 0 && f[0] == model {
				line = l
			}
		}
		if line == "" {
			t.Errorf("no line for %s in:\n%s", model, out)
			continue
		}
		for _, w := range words {
			if !strings.Contains(line, w) {
				t.Errorf("%s: line %q does not mention %s", model, strings.TrimSpace(line), w)
			}
		}
	}
}

func TestMaxThreadsNearGoLimitIsAUsageError(t *testing.T) {
	code, _, stderr := runCmd(t, "serve", "--model", "thread", "--max-threads", "20000")
	if code != 2 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "--max-threads 20000") {
		t.Fatalf("exit %d, stderr %q: want exit 2 and one line about --max-threads", code, stderr)
	}
}

// echoOn checks that msg is echoed on c.
func echoOn(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatal(fmt.Errorf("echo: %q, %v", got, err))
	}
}
