package conformance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/tcplab/tcplab/app/echo"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/internal/testkit"
)

// seamShutdownStuckPeer shuts a server down while its replies wait on a
// peer that does not read, with a write timeout and a drain timeout of a
// minute: the drain must end at the context's deadline (300 ms), not when
// the write gives up, and if it was cut short, Shutdown must say why.
func seamShutdownStuckPeer(t *testing.T, s *Server) {
	shutdownStuckPeer(t, s, func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 300*time.Millisecond)
	}, context.DeadlineExceeded)
}

// seamShutdownCancelled is seamShutdownStuckPeer with a context that has
// no deadline and is cancelled after 300 ms: the cancellation cuts the
// drain, and Shutdown says so.
func seamShutdownCancelled(t *testing.T, s *Server) {
	shutdownStuckPeer(t, s, func() (context.Context, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(300*time.Millisecond, cancel)
		return ctx, cancel
	}, context.Canceled)
}

// stuckShutdownBound is how long such a shutdown may take: far less than
// the minute the write and the drain would otherwise wait (a failure
// limit, not a performance target).
const stuckShutdownBound = 20 * time.Second

// shutdownStuckPeer stalls a connection, then shuts the server down with
// the context newCtx makes, and checks that Shutdown ends soon with want.
func shutdownStuckPeer(t *testing.T, s *Server, newCtx func() (context.Context, context.CancelFunc), want error) {
	s = startStuck(t, s.Model.Name)
	ctx, cancel := newCtx()
	defer cancel()
	start := time.Now()
	err := s.Shutdown(ctx)
	took := time.Since(start)
	// Normally the drain cannot finish (the peer's window stays shut) and
	// is cut; on a machine so busy that the server had not read enough to
	// fill its socket when the client's write timed out, it may finish,
	// and the bound below is then all there is to check.
	if err != nil && !errors.Is(err, want) {
		t.Errorf("Shutdown returned %v: want a drain cut short by %v", err, want)
	}
	if err == nil {
		t.Logf("the drain finished before the cut: the server's socket had room")
	}
	if took > stuckShutdownBound {
		t.Errorf("Shutdown took %v with a peer that does not read: want it to end with its context (a 300 ms drain)", took)
	}
	s.awaitServe(t)
}

// seamShutdownRefuses checks that Shutdown stops accepting at once:
// while a stuck peer holds its drain open, a new connection is refused
// (ECONNREFUSED), not taken into a backlog no one will accept from and
// reset when the drain ends.
func seamShutdownRefuses(t *testing.T, s *Server) {
	s = startStuck(t, s.Model.Name)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(ctx) }()
	addr := s.Addr().String()
	accepted := 0
	err := testkit.Wait(testkit.Bound, func() error {
		nc, err := net.DialTimeout("tcp", addr, ioTimeout)
		switch {
		case err == nil:
			nc.Close()
			accepted++
			return fmt.Errorf("%d connections made while Shutdown drained", accepted)
		case errors.Is(err, syscall.ECONNREFUSED):
			return nil
		}
		return err
	})
	if err != nil {
		t.Errorf("a new connection during Shutdown's drain was not refused: %v", err)
	}
	cancel() // cut the drain the stuck peer holds
	select {
	case err := <-shut:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Shutdown returned %v: want nil or a drain cut short by the cancellation", err)
		}
	case <-time.After(stuckShutdownBound):
		t.Fatalf("Shutdown did not return within %v of its cancellation", stuckShutdownBound)
	}
	s.awaitServe(t)
}

// startStuck starts model serving echo, with a write timeout and a drain
// timeout of a minute, and stalls a connection to it: the server's
// replies wait on a peer that does not read, so its drain cannot finish
// until the test's Shutdown context cuts it.
func startStuck(t *testing.T, model string) *Server {
	s := Start(t, model, echo.New(), engine.Config{
		App: "echo", MaxPending: seamLimit, WriteTimeout: time.Minute, DrainTimeout: time.Minute,
	})
	c := s.Dial(t)
	// A small receive buffer, fixed, so the window never opens for more
	// of what the server still holds.
	if err := c.SetReadBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	stall(t, c)
	return s
}

// stall sends to an echo server without reading the echo until the server
// stops taking bytes: then its replies fill the socket and it is stuck
// writing (or, on an event loop, paused).
func stall(t *testing.T, c net.Conn) {
	t.Helper()
	chunk := make([]byte, 1<<20)
	for sent := 0; sent < 256<<20; sent += len(chunk) {
		c.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := c.Write(chunk); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
			t.Fatalf("sending to stall the server: %v", err)
		}
	}
	t.Fatal("the server took 256 MiB without the client reading: it is not writing the echo back")
}
