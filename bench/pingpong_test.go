package bench

import (
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkPingPong measures servers' CPU per round trip. Each server runs
// in its own process pinned to CPU 0 (GOMAXPROCS=1, one loop for reactor and uring);
// this process, the load, is pinned to CPU 1. Clients run closed-loop
// 64-byte ping-pong over 100 and over 1000 connections; one op is one
// round trip. Besides ns/op (client wall time), it reports
//
//	server-us/rt  the server's user+system CPU per round trip (/proc/PID/stat)
//	rt/s          round trips per second
//
// Run with a few seconds per case, as /proc/PID/stat counts 10 ms ticks:
//
//	go test ./bench/ -run '^$' -bench PingPong -benchtime 3s
//
// The C reference (cecho.c) is built with the system cc, and skipped with a
// message when there is none.
func BenchmarkPingPong(b *testing.B) {
	if runtime.NumCPU() < 2 {
		b.Skip("needs 2 CPUs: one for the server, one for the load")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	pinThreads(b, os.Getpid(), 1)
	servers := []struct {
		name string
		args []string
	}{
		{"reactor", []string{"--model", "reactor", "--loops", "1"}},
		{"uring", []string{"--model", "uring", "--loops", "1"}},
		{"goroutine", []string{"--model", "goroutine"}},
		{"cecho", nil},
	}
	for _, s := range servers {
		b.Run(s.name, func(b *testing.B) {
			var srv *child
			if s.args == nil {
				srv = startServer(b, buildBinary(b, "cecho"), "127.0.0.1", "0")
			} else {
				args := append([]string{"serve", "--app", "echo", "--addr", "127.0.0.1:0",
					"--backlog", "4096"}, s.args...)
				srv = startPinnedGo(b, buildBinary(b, "tcplab"), args...)
			}
			srv.Pin(b, 0)
			for _, n := range []int{100, 1000} {
				b.Run(strconv.Itoa(n)+"conns", func(b *testing.B) { pingPong(b, srv, n) })
			}
		})
	}
}

// startPinnedGo starts a Go server with one P, as on one CPU.
func startPinnedGo(b *testing.B, bin string, args ...string) *child {
	b.Setenv("GOMAXPROCS", "1")
	return startServer(b, bin, args...)
}

func pingPong(b *testing.B, srv *child, n int) {
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := dial(srv.Addr, i)
		if err != nil {
			b.Fatal(err)
		}
		conns[i] = c
		defer c.Close()
	}
	// One round trip on each connection first, so every one is set up.
	var left atomic.Int64
	run := func(total int) time.Duration {
		left.Store(int64(total))
		var wg sync.WaitGroup
		start := time.Now()
		for _, c := range conns {
			wg.Go(func() {
				msg := make([]byte, 64)
				got := make([]byte, 64)
				for left.Add(-1) >= 0 {
					if _, err := c.Write(msg); err != nil {
						b.Error(err)
						return
					}
					if _, err := io.ReadFull(c, got); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return time.Since(start)
	}
	run(n)
	b.ResetTimer()
	cpu0 := srv.CPU(b)
	elapsed := run(b.N)
	cpu := srv.CPU(b) - cpu0
	b.StopTimer()
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "server-us/rt")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rt/s")
}
