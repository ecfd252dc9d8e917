package metrics_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/tcplab/tcplab/app/echo"
	"github.com/tcplab/tcplab/conformance"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/internal/testkit"
	"github.com/tcplab/tcplab/metrics"
)

// What --metrics costs the serving path:
//
//	go test ./metrics -run '^$' -bench . -benchtime 2s

// BenchmarkObserveQueue is one observation of the outbound queue
// histogram, the only metric fed while serving.
func BenchmarkObserveQueue(b *testing.B) {
	m := metrics.New("bench", "echo")
	n := 0
	for b.Loop() {
		m.ObserveQueue(64 + n&1023)
		n++
	}
}

// BenchmarkPingPong is a 64-byte echo round trip on one open connection,
// without and with the metrics hooked in (and scraped once, so the
// collectors are live).
func BenchmarkPingPong(b *testing.B) {
	for _, model := range []string{"goroutine", "reactor"} {
		for _, on := range []bool{false, true} {
			name := model + "/metrics-off"
			if on {
				name = model + "/metrics-on"
			}
			b.Run(name, func(b *testing.B) {
				cfg := engine.Config{App: "echo"}
				var m *metrics.Metrics
				if on {
					m = metrics.New(model, "echo")
					cfg.ObserveQueue = m.ObserveQueue
				}
				h := echo.New()
				s := conformance.Start(b, model, h, cfg)
				if on {
					if err := m.Watch(s, h); err != nil {
						b.Fatal(err)
					}
					if _, err := m.Gather(); err != nil {
						b.Fatal(err)
					}
				}
				c, err := net.DialTimeout("tcp", s.Addr().String(), testkit.Bound)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				msg := make([]byte, 64)
				for b.Loop() {
					c.SetDeadline(time.Now().Add(testkit.Bound))
					if _, err := c.Write(msg); err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(c, msg); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
