package engine_test

import (
	"testing"
	"time"

	"github.com/tcplab/tcplab/conformance"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/internal/testkit"
)

// TestPoolRefusesPastQueueAndServesQueuedWhenAWorkerFrees runs 2 workers
// and a queue of 2: two live connections hold the workers, two more wait
// in the queue unanswered, a fifth is refused at once with the handler's
// refusal, and each queued connection is served as soon as a worker
// frees.
func TestPoolRefusesPastQueueAndServesQueuedWhenAWorkerFrees(t *testing.T) {
	s := conformance.Start(t, "pool", conformance.Probe(), engine.Config{Workers: 2, Queue: 2})
	a, b := probeClient(t, s), probeClient(t, s)
	a.Call("ping", "pong")
	b.Call("ping", "pong")
	queued := []*testkit.Client{probeClient(t, s), probeClient(t, s)}
	for _, c := range queued {
		c.MustSend("ping")
	}
	probeClient(t, s).End(refusal) // a refusal does not wait for a worker
	if st := s.Stats(); st.Refused != 1 || st.Open != 2 {
		t.Fatalf("stats after the fifth connection: %+v, want Refused 1, Open 2", st)
	}
	// The queued connections are not served while both workers are busy.
	queued[0].Conn().SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := queued[0].Conn().Read(make([]byte, 16)); n > 0 || !isTimeout(err) {
		t.Fatalf("a queued connection was answered while both workers were busy (n=%d, err=%v)", n, err)
	}
	for i, held := range []*testkit.Client{a, b} {
		held.Close()
		queued[i].Next("pong") // served once a worker freed
	}
}

// TestPoolRefusesQueuedConnectionsAtShutdown shuts a pool down with a
// connection still in its queue: the queued one is refused with the
// shutdown reason, the served one gets its farewell.
func TestPoolRefusesQueuedConnectionsAtShutdown(t *testing.T) {
	s := conformance.Start(t, "pool", conformance.Probe(), engine.Config{Workers: 1, Queue: 1})
	served := probeClient(t, s)
	served.Call("ping", "pong")
	queued := probeClient(t, s)
	queued.MustSend("ping")
	// The queue is full once the accept loop has taken it: a third is refused.
	probeClient(t, s).End(refusal)
	s.Stop(t)
	queued.End("REFUSED server shutting down")
	served.End("BYE server shutting down")
	if st := s.Stats(); st.Refused != 2 {
		t.Errorf("stats after shutdown: %+v, want Refused 2", st)
	}
}
