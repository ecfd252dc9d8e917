package engine_test

import (
	"net"
	"testing"
	"time"

	"github.com/tcplab/tcplab/conformance"
	"github.com/tcplab/tcplab/engine"
)

// TestPoolRefusesPastQueueAndServesQueuedWhenAWorkerFrees runs 2 workers
// and a queue of 2: two live connections hold the workers, two more wait
// in the queue unanswered, a fifth is refused at once with the handler's
// refusal, and each queued connection is served as soon as a worker
// frees.
func TestPoolRefusesPastQueueAndServesQueuedWhenAWorkerFrees(t *testing.T) {
	s := conformance.Start(t, "pool", conformance.Probe(), engine.Config{Workers: 2, Queue: 2})
	a, b := s.Dial(t), s.Dial(t)
	mustPing(t, a)
	mustPing(t, b)
	queued := []net.Conn{s.Dial(t), s.Dial(t)}
	for _, c := range queued {
		if _, err := c.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
	}
	expectRefused(t, s.Dial(t)) // bounded by ioBound: a refusal does not wait for a worker
	if st := s.Stats(); st.Refused != 1 || st.Open != 2 {
		t.Fatalf("stats after the fifth connection: %+v, want Refused 1, Open 2", st)
	}
	// The queued connections are not served while both workers are busy.
	queued[0].SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := queued[0].Read(make([]byte, 16)); n > 0 || !isTimeout(err) {
		t.Fatalf("a queued connection was answered while both workers were busy (n=%d, err=%v)", n, err)
	}
	for i, held := range []net.Conn{a, b} {
		held.Close()
		c := queued[i]
		c.SetReadDeadline(time.Now().Add(ioBound))
		if line, err := readLine(c); line != "pong\n" || err != nil {
			t.Fatalf("queued connection %d after a worker freed: %q, %v", i, line, err)
		}
	}
}

// TestPoolRefusesQueuedConnectionsAtShutdown shuts a pool down with a
// connection still in its queue: the queued one is refused with the
// shutdown reason, the served one gets its farewell.
func TestPoolRefusesQueuedConnectionsAtShutdown(t *testing.T) {
	s := conformance.Start(t, "pool", conformance.Probe(), engine.Config{Workers: 1, Queue: 1})
	served := s.Dial(t)
	mustPing(t, served)
	queued := s.Dial(t)
	if _, err := queued.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	// The queue is full once the accept loop has taken it: a third is refused.
	expectRefused(t, s.Dial(t))
	s.Stop(t)
	if got := readAll(t, queued); got != "REFUSED server shutting down\n" {
		t.Errorf("queued connection at shutdown got %q", got)
	}
	if got := readAll(t, served); got != "BYE server shutting down\n" {
		t.Errorf("served connection at shutdown got %q", got)
	}
	if st := s.Stats(); st.Refused != 2 {
		t.Errorf("stats after shutdown: %+v, want Refused 2", st)
	}
}
