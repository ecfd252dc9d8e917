package conformance

import (
	"strconv"
	"testing"
	"time"

	"github.com/tcplab/tcplab/engine"
)

// seamPause: a session that pauses its reading (handler.Flow) gets the
// input it left unconsumed once the pause has passed, not sooner, and
// another connection is served all the while: on the event loops, one on
// the same loop (the server runs one), which must not wait for the pause.
// The 20 round trips the other connection makes take a fraction of the
// second the first one is paused for; a loop that slept through the pause
// would make them after it.
func seamPause(t *testing.T, s *Server) {
	const pause = time.Second
	s = Start(t, s.Model.Name, Probe(), probeCfg(engine.Config{Loops: 1, MaxPending: seamLimit, MaxInbound: seamLimit}))
	a := dialLines(t, s)
	a.Call("queued", "queued 0 "+strconv.Itoa(seamLimit))

	start := time.Now()
	a.MustSend("pause "+strconv.Itoa(int(pause/time.Millisecond)), "ping")
	a.Next("pausing")
	pong := make(chan time.Time, 1)
	go func() {
		if f, err := a.Read(); f == "pong" && err == nil {
			pong <- time.Now()
		}
		close(pong)
	}()
	var others time.Time
	if n := s.Concurrency(); n == 0 || n > 1 {
		b := dialLines(t, s)
		for range 20 {
			b.Call("ping", "pong")
		}
		others = time.Now()
	}
	at, ok := <-pong
	if !ok {
		t.Fatal("the paused connection never answered the ping it sent after the pause")
	}
	if d := at.Sub(start); d < pause {
		t.Errorf("the input after the pause was served %v after it was sent, before the %v pause ended", d, pause)
	}
	if !others.IsZero() && !others.Before(at) {
		t.Errorf("another connection's 20 round trips ended %v after the paused one resumed: they waited for its pause", others.Sub(at))
	}
	checkStats(t, s, "one stall of a second", func(st engine.Stats) bool {
		return st.Stalls == 1 && st.StallTime == pause
	})
}
