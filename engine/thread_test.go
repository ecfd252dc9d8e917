package engine_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/tcplab/tcplab/app/echo"
	"github.com/tcplab/tcplab/conformance"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/internal/testkit"
)

// osThreads returns this process's OS thread count.
func osThreads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("/proc/self/status: %q: %v", line, err)
			}
			return n
		}
	}
	t.Fatal("/proc/self/status has no Threads line")
	return 0
}

// TestThreadCountFollowsConnections opens n connections more than the
// process has threads, and checks that the thread count rises past them
// (each connection holds its own thread, and at least one more runs
// everything else), then falls back as the connections close (each
// connection's thread exits with it).
func TestThreadCountFollowsConnections(t *testing.T) {
	s := conformance.Start(t, "thread", echo.New(), engine.Config{})
	before := osThreads(t)
	n := before + 64
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = s.Dial(t)
		msg := fmt.Sprintf("conn %d\n", i)
		if err := echoed(conns[i], msg); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	if got := osThreads(t); got < n+1 {
		t.Fatalf("%d OS threads with %d connections open (%d before): want at least %d, one per connection and one more",
			got, n, before, n+1)
	}
	for _, c := range conns {
		c.Close()
	}
	testkit.Eventually(t, testkit.Bound, "the connections' threads exit", func() error {
		if got := osThreads(t); got > before+n/2 {
			return fmt.Errorf("%d OS threads after %d connections closed (%d before they opened): the connections' threads did not exit",
				got, n, before)
		}
		return nil
	})
}

// TestThreadCapRefusesCleanly fills --max-threads and checks that one more
// connection gets the handler's refusal and is closed, that the refusal is
// counted, that the connections already served are unaffected, and that a
// freed slot is used again.
func TestThreadCapRefusesCleanly(t *testing.T) {
	checkCap(t, conformance.Start(t, "thread", conformance.Probe(), engine.Config{MaxThreads: 3}), 3)
}

func TestThreadCapStaysBelowGoThreadLimit(t *testing.T) {
	_, err := engine.Listen("thread", echo.New(), engine.Config{Addr: "127.0.0.1:0", MaxThreads: 9500})
	var fe *engine.FieldError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "Config.MaxThreads 9500") {
		t.Fatalf("MaxThreads 9500 (within 1000 of Go's 10000): %v, want a clear refusal naming the field", err)
	}
	srv, err := engine.Listen("thread", echo.New(), engine.Config{Addr: "127.0.0.1:0", MaxThreads: 9000})
	if err != nil {
		t.Fatalf("MaxThreads 9000: %v", err)
	}
	srv.Shutdown(t.Context())
}

// echoed writes msg and checks it comes back.
func echoed(c net.Conn, msg string) error {
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		return fmt.Errorf("echo of %q: %q, %v", msg, got, err)
	}
	return nil
}
