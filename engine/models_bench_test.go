package engine_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/tcplab/tcplab/app/echo"
	"github.com/tcplab/tcplab/conformance"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/internal/testkit"
)

// The benchmarks run every registered model over loopback with the echo
// app and one client, so they show what a model costs per connection and
// per round trip, not how it scales (the load generator does that):
//
//	go test ./engine -run '^$' -bench . -benchtime 2s

// BenchmarkConnect is a connection's whole life seen by a client: dial, one
// 64-byte echo, close. For fork it includes starting a process; for
// thread, starting an OS thread.
func BenchmarkConnect(b *testing.B) {
	msg := make([]byte, 64)
	for _, m := range engine.Models() {
		b.Run(m.Name, func(b *testing.B) {
			s := conformance.Start(b, m.Name, echo.New(), engine.Config{App: "echo"})
			for b.Loop() {
				c, err := net.DialTimeout("tcp", s.Addr().String(), testkit.Bound)
				if err != nil {
					b.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(testkit.Bound))
				if err := roundTripBytes(c, msg); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

// BenchmarkPingPong is one 64-byte round trip on a connection already
// open.
func BenchmarkPingPong(b *testing.B) {
	msg := make([]byte, 64)
	for _, m := range engine.Models() {
		b.Run(m.Name, func(b *testing.B) {
			s := conformance.Start(b, m.Name, echo.New(), engine.Config{App: "echo"})
			c, err := net.DialTimeout("tcp", s.Addr().String(), testkit.Bound)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			for b.Loop() {
				c.SetDeadline(time.Now().Add(testkit.Bound))
				if err := roundTripBytes(c, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func roundTripBytes(c net.Conn, msg []byte) error {
	if _, err := c.Write(msg); err != nil {
		return err
	}
	_, err := io.ReadFull(c, msg)
	return err
}
