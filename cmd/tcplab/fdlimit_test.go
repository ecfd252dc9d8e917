package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/internal/launch"
	"github.com/tcplab/tcplab/internal/testkit"
)

// nofileEnv, in a serve process started by these tests, is the soft
// RLIMIT_NOFILE it sets for itself before serving.
const nofileEnv = "TCPLAB_TEST_NOFILE"

// lowerNofile sets the soft descriptor limit from nofileEnv, if set. It
// runs in the re-executed child only, so the test process keeps its own.
func lowerNofile() {
	v := os.Getenv(nofileEnv)
	if v == "" {
		return
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s=%q: %v\n", nofileEnv, v, err)
		os.Exit(2)
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	lim.Cur = n
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}

// logCount counts the lines of log that contain substr.
func logCount(log, substr string) int {
	n := 0
	for line := range strings.Lines(log) {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}

// settle waits until s's log has as many lines with end as with begin, at
// least one, and returns that number: one begin and one end per episode.
func settle(t *testing.T, s *launch.Process, begin, end string) int {
	t.Helper()
	n := 0
	testkit.Eventually(t, testkit.Bound, fmt.Sprintf("one line with %q and one with %q per episode", begin, end), func() error {
		log := s.Stderr()
		b, e := logCount(log, begin), logCount(log, end)
		if b == e && b > 0 {
			n = b
			return nil
		}
		return fmt.Errorf("%d lines with %q, %d with %q; the log:\n%s", b, begin, e, end, log)
	})
	return n
}

// serveLimited runs "tcplab serve" in a child process whose soft
// RLIMIT_NOFILE is nofile.
func serveLimited(t *testing.T, nofile int, args ...string) *launch.Process {
	t.Helper()
	return testkit.Serve(t, serveCmd(append([]string{"--addr", "127.0.0.1:0"}, args...), nofileEnv+"="+strconv.Itoa(nofile)))
}

// client is one chat connection and its first frame.
type client struct {
	*testkit.Client
	first chan string // the first frame the server sends, or "" at an error
}

// dialClient connects a line-framed chat client to addr and reads its
// first frame in the background, so that many clients can connect before
// any is served.
func dialClient(t *testing.T, addr string) *client {
	t.Helper()
	cl := &client{Client: testkit.Dial(t, addr, frame.Line), first: make(chan string, 1)}
	go func() {
		f, _ := cl.Read()
		cl.first <- f
	}()
	return cl
}

// TestOutOfDescriptors runs servers that have few file descriptors (a
// lowered RLIMIT_NOFILE in their own process) and connects more clients
// than they can hold.
//
// The goroutine model's accept loop backs off (5 ms doubling to 1 s),
// logging once for the episode; the clients it cannot take wait in the
// backlog and are all served once descriptors are free again. The reactor
// refuses them at once with the handler's refusal (it keeps a spare
// descriptor for that), logs once an episode, and serves new clients when
// descriptors are free.
func TestOutOfDescriptors(t *testing.T) {
	const nofile, clients = 64, 80
	t.Run("goroutine", func(t *testing.T) {
		s := serveLimited(t, nofile, "--model", "goroutine", "--app", "chat", "--framing", "line")
		addr := s.Addr
		cs := make([]*client, clients)
		for i := range cs {
			cs[i] = dialClient(t, addr)
		}
		testkit.Eventually(t, testkit.Bound, "the server logs that accept is failing", func() error {
			if logCount(s.Stderr(), "accept failing; backing off") == 0 {
				return fmt.Errorf("the log:\n%s", s.Stderr())
			}
			return nil
		})
		// The server accepts in connection order: each client is served
		// once those before it have left and freed their descriptors.
		for i, cl := range cs {
			if line := <-cl.first; !strings.HasPrefix(line, "HELLO ") {
				t.Fatalf("client %d: first line %q", i, line)
			}
			cl.Close()
		}
		// An episode ends with the next accept that succeeds: after the
		// last client, an accept may fail again with nobody waiting, so
		// one more client ends that episode too. Then there must be one
		// warning and one recovery per episode, however many accepts
		// failed in it (the log reaches this process through a pipe, a
		// little after the clients' HELLO: wait for it to settle).
		if line := <-dialClient(t, addr).first; !strings.HasPrefix(line, "HELLO ") {
			t.Fatalf("a client after the others left: first line %q", line)
		}
		episodes := settle(t, s, "accept failing; backing off", "accept recovered")
		t.Logf("%d episodes of failing accepts", episodes)
	})
	t.Run("reactor", func(t *testing.T) {
		s := serveLimited(t, nofile, "--model", "reactor", "--loops", "1", "--app", "chat", "--framing", "line")
		addr := s.Addr
		cs := make([]*client, clients)
		for i := range cs {
			cs[i] = dialClient(t, addr)
		}
		served, refused := 0, 0
		for _, cl := range cs {
			switch line := <-cl.first; {
			case strings.HasPrefix(line, "HELLO "):
				served++
				cl.Close()
			case strings.HasPrefix(line, "ERR server-full "):
				refused++
			default:
				t.Fatalf("first line %q", line)
			}
		}
		if served == 0 || refused == 0 {
			t.Fatalf("%d served, %d refused: want both", served, refused)
		}
		// Descriptors are free again: new clients are served.
		ok := 0
		testkit.Eventually(t, testkit.Bound, "10 new clients are served after the others left", func() error {
			if line := <-dialClient(t, addr).first; !strings.HasPrefix(line, "HELLO ") {
				return fmt.Errorf("a new client got %q", line)
			}
			if ok++; ok < 10 {
				return testkit.ErrNotYet
			}
			return nil
		})
		// One warning and one "accepting again" per episode, however many
		// connections were refused in it (closing served clients frees
		// descriptors mid-burst, so there may be more than one episode).
		episodes := settle(t, s, "out of file descriptors; refusing new connections", "accepting again")
		t.Logf("%d refused in %d episodes", refused, episodes)
	})
}
