package main

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/tcplab/tcplab/conformance"
	"github.com/tcplab/tcplab/internal/testkit"
)

// liveChildren waits until pid has n live children and returns them.
func liveChildren(t *testing.T, pid, n int) []conformance.Proc {
	t.Helper()
	var kids []conformance.Proc
	testkit.Eventually(t, testkit.Bound, fmt.Sprintf("process %d has %d live children", pid, n), func() error {
		var err error
		if kids, err = conformance.Children(pid); err != nil {
			return err
		}
		kids = slices.DeleteFunc(kids, func(p conformance.Proc) bool { return p.State == "Z" })
		if len(kids) != n {
			return fmt.Errorf("children %v", kids)
		}
		return nil
	})
	return kids
}

// TestPreforkSIGTERMStopsEveryWorkerAndExitsZero runs "tcplab serve --model
// prefork" as a process, keeps a client connected, sends SIGTERM to the
// parent, and expects the client's connection to end, the parent to exit
// 0, and no worker to remain.
func TestPreforkSIGTERMStopsEveryWorkerAndExitsZero(t *testing.T) {
	s := serve(t, "--addr", "127.0.0.1:0", "--model", "prefork", "--workers", "2", "--drain-timeout", "2s")
	liveChildren(t, s.Pid(), 2)
	echoOnce(t, s.Addr, "before")
	c := echoConn(t, s.Addr, "held")
	if err := s.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("client still connected after SIGTERM: (%d, %v)", n, err)
	}
	if err := s.Wait(testkit.Bound); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	conformance.CheckNoStrays(t)
}

// TestProcessModelChildrenDieWithTheirParent SIGKILLs a fork or prefork
// parent, which gets no chance to stop its children, and checks that they
// die with it (Pdeathsig): no orphan is left serving.
func TestProcessModelChildrenDieWithTheirParent(t *testing.T) {
	for _, model := range []string{"fork", "prefork"} {
		t.Run(model, func(t *testing.T) {
			s := serve(t, "--addr", "127.0.0.1:0", "--model", model, "--workers", "2")
			c := echoConn(t, s.Addr, "served by a child")
			want := 1 // fork: the child serving c
			if model == "prefork" {
				want = 2
			}
			liveChildren(t, s.Pid(), want)
			s.Kill()
			conformance.CheckNoStrays(t)
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
