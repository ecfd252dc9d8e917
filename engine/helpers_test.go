package engine_test

import (
	"errors"
	"net"
	"testing"

	"github.com/tcplab/tcplab/conformance"
	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/internal/testkit"
)

// probeClient connects a line client to s, a server running the probe
// handler (conformance.Probe).
func probeClient(t *testing.T, s *conformance.Server) *testkit.Client {
	t.Helper()
	return testkit.NewClient(t, s.Dial(t), frame.Line)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// refusal is what the probe handler sends a connection refused because
// the server is full.
const refusal = "REFUSED server full"

// checkCap fills a server capped at n connections (running the probe
// handler) and checks that one more connection gets the refusal and is
// closed, that the refusal is counted, that the n connections keep being
// served, and that closing one frees its slot.
func checkCap(t *testing.T, s *conformance.Server, n int) {
	t.Helper()
	held := make([]*testkit.Client, n)
	for i := range held {
		held[i] = probeClient(t, s)
		held[i].Call("ping", "pong")
	}
	probeClient(t, s).End(refusal)
	if st := s.Stats(); st.Refused != 1 || st.Open != int64(n) {
		t.Fatalf("stats after one refusal: %+v, want Refused 1, Open %d", st, n)
	}
	for _, c := range held {
		c.Call("ping", "pong")
	}
	held[0].Close()
	conformance.ServedAgain(t, s)
}
