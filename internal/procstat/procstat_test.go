package procstat

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// A test re-runs its own binary as a helper process with PROCSTAT_ROLE set;
// the helper does its part, prints "ready", and waits for stdin to close.
const roleEnv = "PROCSTAT_ROLE"

const burn = 100 * time.Millisecond

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		if err := helper(role); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

func helper(role string) error {
	switch role {
	case "burn", "burn-exit":
		burnCPU(burn)
		if role == "burn-exit" {
			return nil
		}
	case "reaper": // a child burns and exits; this process reaps it
		c := exec.Command(os.Args[0])
		c.Env = append(os.Environ(), roleEnv+"=burn-exit")
		if err := c.Run(); err != nil {
			return err
		}
	case "parent": // a child burns and stays alive
		c, in, err := startRole("burn")
		if err != nil {
			return err
		}
		defer c.Wait()
		defer in.Close()
	case "alloc":
		b := make([]byte, 64<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1 // touch every page
		}
		defer runtime.KeepAlive(b)
	case "sleeper":
		for range 50 {
			time.Sleep(time.Millisecond)
		}
	default:
		return fmt.Errorf("unknown role %q", role)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// burnCPU spins until this process has used d of CPU, as the kernel counts.
func burnCPU(d time.Duration) {
	x := 0
	for {
		for i := range 1 << 20 {
			x += i
		}
		if st, err := ReadStat(os.Getpid()); err != nil || st.CPU() >= d {
			return
		}
	}
}

// startRole starts a helper and waits for its "ready". Closing the returned
// writer ends it.
func startRole(role string) (*exec.Cmd, io.WriteCloser, error) {
	c := exec.Command(os.Args[0])
	c.Env = append(os.Environ(), roleEnv+"="+role)
	c.Stderr = os.Stderr
	in, err := c.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	out, err := c.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := c.Start(); err != nil {
		return nil, nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		in.Close()
		c.Wait()
		return nil, nil, fmt.Errorf("helper %s: %q, %v", role, line, err)
	}
	return c, in, nil
}

func runRole(t *testing.T, role string) int {
	t.Helper()
	c, in, err := startRole(role)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			c.Process.Kill()
			<-done
			t.Errorf("helper %s did not exit", role)
		}
	})
	return c.Process.Pid
}

func TestParseStatCommWithSpacesAndParens(t *testing.T) {
	line := "4242 (a) (b c) S 17 1 1 0 -1 4194560 100 0 0 0 250 30 7 3 20 0 9 0 12345 1000 100\n"
	s, err := ParseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	want := Stat{PID: 4242, PPID: 17, Comm: "a) (b c", State: 'S', UTime: 250, STime: 30, CUTime: 7, CSTime: 3, Threads: 9}
	if s != want {
		t.Fatalf("got %+v\nwant %+v", s, want)
	}
	if s.CPU() != 2800*time.Millisecond || s.ChildrenCPU() != 100*time.Millisecond {
		t.Fatalf("CPU %v, children %v", s.CPU(), s.ChildrenCPU())
	}
}

func TestParseStatRejectsMalformed(t *testing.T) {
	for _, in := range []string{
		"",
		"1 (x",
		"x (y) S 1",
		"1 (y) S 1 2 3",
		"1 (y) SS 0 1 1 0 -1 0 0 0 0 0 1 1 1 1 20 0 1 0 1 1 1",
		"1 (y) S 0 1 1 0 -1 0 0 0 0 0 1 -1 1 1 20 0 1 0 1 1 1",
	} {
		if _, err := ParseStat([]byte(in)); err == nil {
			t.Errorf("ParseStat(%q) succeeded", in)
		}
	}
}

func TestReadStatSelf(t *testing.T) {
	s, err := ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// The state is the main thread's, which may sleep while another
	// thread runs this test: any state of a live process (not Z, not X).
	if s.PID != os.Getpid() || s.PPID != os.Getppid() || !strings.ContainsRune("RSDTtIWP", rune(s.State)) || s.Threads < 1 {
		t.Fatalf("self: %+v (pid %d ppid %d)", s, os.Getpid(), os.Getppid())
	}
	if _, err := ReadStat(-1); err == nil {
		t.Fatal("ReadStat(-1) succeeded")
	}
}

func TestParseStatus(t *testing.T) {
	in := "Name:\tx\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\nThreads:\t5\n" +
		"voluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n"
	s, err := ParseStatus([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := Status{RSS: 1 << 20, PeakRSS: 2 << 20, Threads: 5, Voluntary: 12, Involuntary: 3}
	if s != want {
		t.Fatalf("got %+v, want %+v", s, want)
	}
	for _, bad := range []string{"VmRSS:\t12\n", "Threads:\tmany\n", "VmHWM:\t-1 kB\n", "voluntary_ctxt_switches:\n"} {
		if _, err := ParseStatus([]byte(bad)); err == nil {
			t.Errorf("ParseStatus(%q) succeeded", bad)
		}
	}
}

func TestTreeCountsLiveDescendants(t *testing.T) {
	pid := runRole(t, "parent")
	own, err := ReadStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	s := burnedTree(t, pid, 2, "the helper and its child")
	if own.CPU()+own.ChildrenCPU() >= burn {
		t.Errorf("the parent itself used %v; the test needs the CPU to be in the child", own.CPU())
	}
	if s.Threads < 2 || s.RSS == 0 || s.PeakRSS < s.RSS {
		t.Errorf("threads %d, rss %d, peak %d", s.Threads, s.RSS, s.PeakRSS)
	}
}

func TestTreeCountsReapedChildren(t *testing.T) {
	burnedTree(t, runRole(t, "reaper"), 1, "the helper; its child was reaped")
}

// burnedTree returns Tree(pid), checking that it counts procs processes
// (who they are) and at least burn of CPU, which a child of pid burned.
func burnedTree(t *testing.T, pid, procs int, who string) Sample {
	t.Helper()
	s, err := Tree(pid)
	if err != nil {
		t.Fatal(err)
	}
	if s.Procs != procs {
		t.Errorf("Procs %d, want %d (%s)", s.Procs, procs, who)
	}
	if s.CPU < burn {
		t.Errorf("tree CPU %v, want at least the child's %v", s.CPU, burn)
	}
	return s
}

func TestPeakRSS(t *testing.T) {
	pid := runRole(t, "alloc")
	s, err := ReadStatus(pid)
	if err != nil {
		t.Fatal(err)
	}
	if s.RSS < 64<<20 || s.PeakRSS < s.RSS {
		t.Fatalf("rss %d, peak %d, want at least 64 MiB", s.RSS, s.PeakRSS)
	}
}

func TestSwitchesSumsThreads(t *testing.T) {
	pid := runRole(t, "sleeper")
	vol, _ := Switches(pid)
	main, err := ReadStatus(pid)
	if err != nil {
		t.Fatal(err)
	}
	if vol < 25 {
		t.Errorf("voluntary switches %d after 50 sleeps, want at least 25", vol)
	}
	if vol < main.Voluntary {
		t.Errorf("sum over threads %d below the main thread's %d", vol, main.Voluntary)
	}
	tids, err := Tasks(pid)
	if err != nil || len(tids) < 1 || !strings.Contains(fmt.Sprint(tids), fmt.Sprint(pid)) {
		t.Errorf("tasks %v (%v) should include the main thread %d", tids, err, pid)
	}
}

func TestTreeOfMissingProcessFails(t *testing.T) {
	c := exec.Command(os.Args[0])
	c.Env = append(os.Environ(), roleEnv+"=burn-exit")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	if _, err := Tree(c.Process.Pid); err == nil {
		t.Fatal("Tree of a reaped process succeeded")
	}
}
