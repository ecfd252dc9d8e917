package engine_test

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcplab/tcplab/app/echo"
	"github.com/tcplab/tcplab/conformance"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/internal/testkit"
)

// TestForkReapsEveryChild opens and closes 500 connections, each served
// by its own child process (20 clients at a time), and checks that every
// child was reaped: none is left as a zombie, and after shutdown no process
// of this program is left, child or orphan.
func TestForkReapsEveryChild(t *testing.T) {
	const total, parallel = 500, 20
	s := conformance.Start(t, "fork", echo.New(), engine.Config{App: "echo"})
	var wg sync.WaitGroup
	errs := make(chan error, total)
	for g := range parallel {
		wg.Go(func() {
			for i := g; i < total; i += parallel {
				if err := echoOnce(s.Addr().String(), fmt.Sprintf("connection %d\n", i)); err != nil {
					errs <- fmt.Errorf("connection %d: %w", i, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Each child exits once its client has gone; the parent reaps it.
	testkit.Eventually(t, testkit.Bound, "every child exits once its client has gone", func() error {
		if open := s.Stats().Open; open != 0 {
			return fmt.Errorf("%d children still running", open)
		}
		return nil
	})
	if st := s.Stats(); st.Accepted != total || st.Refused != 0 {
		t.Fatalf("stats %+v, want %d accepted and none refused", st, total)
	}
	kids, err := conformance.Children(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if len(kids) != 0 {
		t.Fatalf("every child has exited, yet processes remain: %v", kids)
	}
	s.Stop(t)
	conformance.CheckNoStrays(t)
}

// TestForkCapRefusesCleanly fills --max-procs with live children and checks
// that one more connection gets the handler's refusal from the parent,
// counted, while the children keep serving, and that a child's exit frees
// its slot.
func TestForkCapRefusesCleanly(t *testing.T) {
	checkCap(t, conformance.Start(t, "fork", conformance.Probe(), engine.Config{App: "probe", MaxProcs: 2}), 2)
}

// TestForkChildServesInParentsStead checks that the connection is served by
// another process: the parent closes its copy at once, and the child keeps
// serving while the parent holds no connection at all.
func TestForkChildServesInParentsStead(t *testing.T) {
	s := conformance.Start(t, "fork", conformance.Probe(), engine.Config{App: "probe"})
	c := probeClient(t, s)
	c.Call("ping", "pong")
	kids, err := conformance.Children(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Readlink("/proc/self/exe")
	if len(kids) != 1 || kids[0].Exe != self {
		t.Fatalf("with one connection open, children %v: want one process running %s", kids, self)
	}
	if st := s.Stats(); st.Open != 1 {
		t.Fatalf("parent stats %+v: want one child open", st)
	}
	// The server's end of the connection is a descriptor of the child
	// only: the parent closed its copy.
	sock := serverSocket(t, c.Conn())
	if holds(t, "self", sock) {
		t.Fatalf("the parent still holds the connection's socket (%s)", sock)
	}
	if !holds(t, strconv.Itoa(kids[0].PID), sock) {
		t.Fatalf("the child does not hold the connection's socket (%s)", sock)
	}
	c.Call("ping", "pong")
}

// serverSocket returns "socket:[inode]" for the server's end of the
// loopback connection c, from /proc/net/tcp.
func serverSocket(t *testing.T, c net.Conn) string {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	local := fmt.Sprintf(":%04X", c.RemoteAddr().(*net.TCPAddr).Port)
	remote := fmt.Sprintf(":%04X", c.LocalAddr().(*net.TCPAddr).Port)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 9 && strings.HasSuffix(f[1], local) && strings.HasSuffix(f[2], remote) {
			return "socket:[" + f[9] + "]"
		}
	}
	t.Fatalf("no server socket for %v in /proc/net/tcp", c.LocalAddr())
	return ""
}

// holds reports whether process pid ("self" for this one) has a
// descriptor for sock.
func holds(t *testing.T, pid, sock string) bool {
	t.Helper()
	dir := "/proc/" + pid + "/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if link, err := os.Readlink(dir + "/" + e.Name()); err == nil && link == sock {
			return true
		}
	}
	return false
}

// TestForkParentHoldsNoThreadPerChild keeps 60 children alive and checks
// that the parent waits for them without an OS thread each (a blocking
// wait per child would make it a thread-per-connection server itself).
func TestForkParentHoldsNoThreadPerChild(t *testing.T) {
	const n = 60
	s := conformance.Start(t, "fork", echo.New(), engine.Config{App: "echo"})
	before := osThreads(t)
	for i := range n {
		if err := echoed(s.Dial(t), fmt.Sprintf("child %d\n", i)); err != nil {
			t.Fatal(err)
		}
	}
	if open := s.Stats().Open; open != n {
		t.Fatalf("%d children open, want %d", open, n)
	}
	if after := osThreads(t); after-before >= n/2 {
		t.Fatalf("%d OS threads with %d children alive, %d before: the parent holds a thread per child", after, n, before)
	}
}

// echoOnce connects to addr, checks that msg is echoed, and closes.
func echoOnce(addr, msg string) error {
	c, err := net.DialTimeout("tcp", addr, testkit.Bound)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testkit.Bound))
	return echoed(c, msg)
}
