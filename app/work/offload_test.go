package work_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tcplab/tcplab/app/work"
	"github.com/tcplab/tcplab/conformance"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/internal/testkit"
)

// TestOffloadedSleepsKeepTheOrder pipelines sleeps, echoes and a sleep
// over the limit to a handler with Options.Offload, on a loop and on a
// blocking model: the replies come in request order, and each valid sleep
// ran through the offload.
func TestOffloadedSleepsKeepTheOrder(t *testing.T) {
	for _, model := range []string{"reactor", "goroutine"} {
		t.Run(model, func(t *testing.T) {
			h, err := work.New(work.Options{Offload: true})
			if err != nil {
				t.Fatal(err)
			}
			s := conformance.Start(t, model, h, engine.Config{App: "work", Loops: 1})
			c := testkit.Dial(t, s.Addr().String(), frame.Length)
			c.MustSend("sleep 2000", "echo a", "sleep 1000", "sleep 5000000", "echo b", "sleep 1", "echo c")
			for _, want := range []string{"OK slept 2000", "OK a", "OK slept 1000", "ERR too-much", "OK b", "OK slept 1", "OK c"} {
				f := c.MustRead()
				if !strings.HasPrefix(f, want) {
					t.Fatalf("got %q, want %q...", f, want)
				}
			}
			// A reply is counted just after it is written.
			testkit.Eventually(t, testkit.Bound, "the counts", func() error {
				if st, n := s.Stats(), h.Counts(); st.Offloads != 3 || n.FramesIn != 7 || n.FramesOut != 7 {
					return fmt.Errorf("%d offloaded functions, want the 3 valid sleeps; counts %+v, want 7 frames in and out", st.Offloads, n)
				}
				return nil
			})
		})
	}
}
