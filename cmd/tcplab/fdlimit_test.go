package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

// logTail collects a child's stderr lines.
type logTail struct {
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

func (l *logTail) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}

// waitFor waits until a line containing substr has been logged.
func (l *logTail) waitFor(t *testing.T, substr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.count(substr) == 0 {
		if time.Now().After(deadline) {
			l.mu.Lock()
			defer l.mu.Unlock()
			t.Fatalf("no log line with %q; the log:\n%s", substr, strings.Join(l.lines, "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settle waits until the log has as many lines with end as with begin,
// at least one, and returns that number: one begin and one end per
// episode. It fails the test if they do not match within 10 s.
func (l *logTail) settle(t *testing.T, begin, end string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, e := l.count(begin), l.count(end)
		if b == e && b > 0 {
			return b
		}
		if time.Now().After(deadline) {
			l.mu.Lock()
			defer l.mu.Unlock()
			t.Fatalf("%d lines with %q, %d with %q: want one of each per episode; the log:\n%s",
				b, begin, e, end, strings.Join(l.lines, "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serveLimited runs "tcplab serve" in a child process whose soft
// RLIMIT_NOFILE is nofile, and returns its address and its log.
func serveLimited(t *testing.T, nofile int, args ...string) (string, *logTail) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "TCPLAB_TEST_MAIN=1", nofileEnv+"="+strconv.Itoa(nofile))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	log := &logTail{done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		defer close(log.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.mu.Lock()
			log.lines = append(log.lines, sc.Text())
			log.mu.Unlock()
			if m := servingAddr.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		waitExit(t, cmd, 10*time.Second)
		<-log.done
	})
	select {
	case a := <-addr:
		return a, log
	case <-time.After(10 * time.Second):
		t.Fatal("tcplab serve never reported its address")
		return "", nil
	}
}

// client is one chat connection and its first line.
type client struct {
	c     net.Conn
	first chan string // the first line the server sends, or "" at an error
}

func dialClient(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	cl := &client{c: c, first: make(chan string, 1)}
	go func() {
		line, _ := bufio.NewReader(c).ReadString('\n')
		cl.first <- line
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
		addr, log := serveLimited(t, nofile, "--model", "goroutine", "--app", "chat", "--framing", "line")
		cs := make([]*client, clients)
		for i := range cs {
			cs[i] = dialClient(t, addr)
		}
		log.waitFor(t, "accept failing; backing off")
		// The server accepts in connection order: each client is served
		// once those before it have left and freed their descriptors.
		for i, cl := range cs {
			if line := <-cl.first; !strings.HasPrefix(line, "HELLO ") {
				t.Fatalf("client %d: first line %q", i, line)
			}
			cl.c.Close()
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
		episodes := log.settle(t, "accept failing; backing off", "accept recovered")
		t.Logf("%d episodes of failing accepts", episodes)
	})
	t.Run("reactor", func(t *testing.T) {
		addr, log := serveLimited(t, nofile, "--model", "reactor", "--loops", "1", "--app", "chat", "--framing", "line")
		cs := make([]*client, clients)
		for i := range cs {
			cs[i] = dialClient(t, addr)
		}
		served, refused := 0, 0
		for _, cl := range cs {
			switch line := <-cl.first; {
			case strings.HasPrefix(line, "HELLO "):
				served++
				cl.c.Close()
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
		deadline := time.Now().Add(10 * time.Second)
		for ok := 0; ok < 10; {
			if line := <-dialClient(t, addr).first; strings.HasPrefix(line, "HELLO ") {
				ok++
			} else if time.Now().After(deadline) {
				t.Fatalf("after the clients left, a new one got %q", line)
			}
		}
		// One warning and one "accepting again" per episode, however many
		// connections were refused in it (closing served clients frees
		// descriptors mid-burst, so there may be more than one episode).
		episodes := log.settle(t, "out of file descriptors; refusing new connections", "accepting again")
		t.Logf("%d refused in %d episodes", refused, episodes)
	})
}
