package cpupin

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tcplab/tcplab/internal/procstat"
)

const roleEnv = "CPUPIN_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "":
		goleak.VerifyTestMain(m)
	case "wait":
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin)
	case "parent":
		child := helperCmd("wait")
		in, _ := child.StdinPipe()
		out, _ := child.StdoutPipe()
		if err := child.Start(); err != nil {
			os.Exit(1)
		}
		bufio.NewReader(out).ReadString('\n')
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin)
		in.Close()
		child.Wait()
	}
}

func helperCmd(role string) *exec.Cmd {
	c := exec.Command(os.Args[0])
	c.Env = append(os.Environ(), roleEnv+"="+role)
	c.Stderr = os.Stderr
	return c
}

// start runs a helper (pinned to cpus unless nil), waits for its "ready",
// and ends it when the test ends.
func start(t *testing.T, role string, cpus []int) int {
	t.Helper()
	c := helperCmd(role)
	in, err := c.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if cpus != nil {
		err = StartPinned(c, cpus)
	} else {
		err = c.Start()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			c.Process.Kill()
			<-done
			t.Error("helper did not exit")
		}
	})
	if line, err := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		t.Fatalf("helper: %q, %v", line, err)
	}
	return c.Process.Pid
}

// wantPinned checks every thread of pid.
func wantPinned(t *testing.T, pid int, cpus []int) {
	t.Helper()
	tids, err := procstat.Tasks(pid)
	if err != nil {
		t.Fatal(err)
	}
	if len(tids) < 2 {
		t.Fatalf("pid %d has %d threads; a Go helper should have several", pid, len(tids))
	}
	for _, tid := range tids {
		got, err := Affinity(tid)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, cpus) {
			t.Errorf("pid %d thread %d runs on %v, want %v", pid, tid, got, cpus)
		}
	}
}

func onlineCPUs(t *testing.T) []int {
	t.Helper()
	online, err := Online()
	if err != nil {
		t.Fatal(err)
	}
	return online
}

func TestParseAndFormatList(t *testing.T) {
	for in, want := range map[string][]int{
		"0": {0}, "0-3": {0, 1, 2, 3}, "3,0-1": {0, 1, 3}, "1,1,1": {1}, " 2-2\n": {2}, "5,7-8": {5, 7, 8},
	} {
		got, err := ParseList(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseList(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a", "1-", "-1", "3-1", "0,,1", "1024", "0-99999"} {
		if _, err := ParseList(bad); err == nil {
			t.Errorf("ParseList(%q) succeeded", bad)
		}
	}
	if got := FormatList([]int{3, 0, 1, 2, 7, 9, 10}); got != "0-3,7,9-10" {
		t.Errorf("FormatList = %q", got)
	}
}

func TestCheckRefusesOfflineCPU(t *testing.T) {
	online := onlineCPUs(t)
	if err := Check(online); err != nil {
		t.Fatalf("online CPUs refused: %v", err)
	}
	if err := Check([]int{maxCPU - 1}); err == nil {
		t.Fatal("CPU 1023 accepted as online")
	}
}

func TestStartPinnedPinsEveryThreadAndRestoresCaller(t *testing.T) {
	online := onlineCPUs(t)
	before, err := Affinity(0)
	if err != nil {
		t.Fatal(err)
	}
	want := online[len(online)-1:]
	pid := start(t, "wait", want)
	wantPinned(t, pid, want)
	self, err := Affinity(os.Getpid())
	if err != nil || !slices.Equal(self, before) {
		t.Fatalf("this process now runs on %v (%v), was %v", self, err, before)
	}
}

func TestPinMovesARunningProcessAndItsChildren(t *testing.T) {
	online := onlineCPUs(t)
	pid := start(t, "parent", nil)
	kids, err := procstat.Descendants(pid)
	if err != nil || len(kids) != 1 {
		t.Fatalf("descendants %v, %v", kids, err)
	}
	for _, cpu := range online {
		want := []int{cpu}
		if err := PinTree(pid, want); err != nil {
			t.Fatal(err)
		}
		wantPinned(t, pid, want)
		wantPinned(t, kids[0], want)
	}
	if err := Pin(pid, nil); err == nil {
		t.Fatal("Pin to no CPUs succeeded")
	}
}
