package engine_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/tcplab/tcplab/app/echo"
	"github.com/tcplab/tcplab/conformance"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/internal/testkit"
)

// TestProcessModelsCountChildTraffic checks that a fork or prefork
// server's Stats count what its child processes did: they serve every
// byte, and report to the parent. While three clients are connected the
// parent sees their connections and every byte echoed; once they leave,
// no connection is open, and the counts stay after the children exit.
func TestProcessModelsCountChildTraffic(t *testing.T) {
	const conns, size = 3, 100 << 10
	for _, model := range []string{"fork", "prefork"} {
		t.Run(model, func(t *testing.T) {
			s := conformance.Start(t, model, echo.New(), engine.Config{App: "echo", Workers: 2})
			msg := bytes.Repeat([]byte("e"), size)
			cs := make([]net.Conn, conns)
			for i := range cs {
				cs[i] = s.Dial(t)
				if _, err := cs[i].Write(msg); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(cs[i], make([]byte, size)); err != nil {
					t.Fatalf("echo %d: %v", i, err)
				}
			}
			want := uint64(conns * size)
			testkit.Eventually(t, testkit.Bound, "the children's traffic is counted", func() error {
				st := s.Stats()
				if st.Accepted != conns || st.Open != conns || st.BytesIn != want || st.BytesOut != want {
					return fmt.Errorf("with %d clients connected, each echoed %d bytes: stats %+v", conns, size, st)
				}
				return nil
			})
			for _, c := range cs {
				c.Close()
			}
			testkit.Eventually(t, testkit.Bound, "the counts stay after the clients left", func() error {
				if st := s.Stats(); st.Open != 0 || st.BytesIn != want || st.Accepted != conns {
					return fmt.Errorf("after every client left: stats %+v", st)
				}
				return nil
			})
			s.Stop(t)
			if st := s.Stats(); st.BytesIn != want || st.BytesOut != want || st.Open != 0 {
				t.Fatalf("after shutdown the children's counts are gone: %+v", st)
			}
			conformance.CheckNoStrays(t)
		})
	}
}
