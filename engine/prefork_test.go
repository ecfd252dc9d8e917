package engine_test

import (
	"fmt"
	"os"
	"slices"
	"syscall"
	"testing"

	"github.com/tcplab/tcplab/app/echo"
	"github.com/tcplab/tcplab/conformance"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/internal/testkit"
)

// workers returns the live worker processes of a prefork server run by
// this process.
func workers(t *testing.T) []conformance.Proc {
	t.Helper()
	kids, err := conformance.Children(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(kids, func(p conformance.Proc) bool { return p.State == "Z" })
}

// waitWorkers waits until n workers run, none of them in gone, and returns
// them.
func waitWorkers(t *testing.T, n int, gone ...int) []conformance.Proc {
	t.Helper()
	var ws []conformance.Proc
	testkit.Eventually(t, testkit.Bound, fmt.Sprintf("%d workers run, none of %v", n, gone), func() error {
		ws = workers(t)
		if len(ws) != n || slices.ContainsFunc(ws, func(p conformance.Proc) bool { return slices.Contains(gone, p.PID) }) {
			return fmt.Errorf("workers %v: want %d, none of %v", ws, n, gone)
		}
		return nil
	})
	return ws
}

// TestPreforkSurvivesAKilledWorker SIGKILLs one of two workers and checks
// that every new connection is still answered, by the other worker while
// the supervisor restarts the dead one, and that the supervisor does
// restart it.
func TestPreforkSurvivesAKilledWorker(t *testing.T) {
	s := conformance.Start(t, "prefork", echo.New(), engine.Config{App: "echo", Workers: 2})
	addr := s.Addr().String()
	if err := echoOnce(addr, "before\n"); err != nil {
		t.Fatal(err)
	}
	ws := waitWorkers(t, 2)
	victim := ws[0].PID
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := echoOnce(addr, fmt.Sprintf("after the kill %d\n", i)); err != nil {
			t.Fatalf("connection %d after worker %d was killed: %v", i, victim, err)
		}
	}
	waitWorkers(t, 2, victim)
	if err := echoOnce(addr, "after the restart\n"); err != nil {
		t.Fatal(err)
	}
	s.Stop(t)
	conformance.CheckNoStrays(t)
}

// TestPreforkStopsEveryWorker shuts a prefork server down with a client
// connected: the client's worker sends its farewell and closes, and when
// Shutdown returns no worker is left running, as a zombie or an orphan.
func TestPreforkStopsEveryWorker(t *testing.T) {
	s := conformance.Start(t, "prefork", conformance.Probe(), engine.Config{App: "probe", Workers: 3})
	c := probeClient(t, s)
	c.Call("ping", "pong")
	waitWorkers(t, 3)
	s.Stop(t)
	c.End("BYE server shutting down") // the farewell
	if ws := workers(t); len(ws) != 0 {
		t.Fatalf("workers still running after Shutdown returned: %v", ws)
	}
	conformance.CheckNoStrays(t)
}
