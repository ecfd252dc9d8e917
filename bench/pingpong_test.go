package bench

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
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
// After the servers of one run it logs each one's CPU per round trip as a
// ratio to the C server's in that same run (with -count N, one table per
// run): on a noisy machine, ratios from one run are what compare.
//
// To compare two builds of tcplab (before and after a change), name the
// other build's binary in TCPLAB_BENCH_BASE (see baseEnv): each tcplab
// server then runs on both builds, alternately, old, new, old, new, and the
// run ends with the new build's CPU per round trip as a ratio to the old's.
//
// The C reference (cecho.c) is built with the system cc, and skipped with a
// message when there is none.
func BenchmarkPingPong(b *testing.B) {
	loadOnCPU1(b)
	models, servers := serversUnderTest(b)
	// cpu holds the last measurement of each server and connection count
	// in this run (a sub-benchmark runs more than once as b.N grows).
	cpu := map[string]float64{}
	for _, s := range servers {
		b.Run(s.name, func(b *testing.B) {
			srv := startAny(b, s)
			srv.Pin(b, 0)
			for _, n := range conns {
				b.Run(strconv.Itoa(n)+"conns", func(b *testing.B) {
					cpu[s.name+"/"+strconv.Itoa(n)] = pingPong(b, srv, n)
				})
			}
		})
	}
	var all []string
	for _, s := range servers {
		all = append(all, s.name)
	}
	logRatios(b, "server CPU per round trip, and its ratio to cecho's in this run", cpu, all, "cecho", nil)
	var keys []string
	for _, n := range conns {
		keys = append(keys, strconv.Itoa(n))
	}
	if ab := abRatios(cpu, models, keys, "us"); ab != "" {
		fmt.Fprintf(os.Stdout, "%s: server CPU per round trip (us) at 100 and 1000 connections, this build against %s, means of two rounds:%s\n",
			b.Name(), baseEnv, ab)
	}
}

// pinnedModels are the servers the pinned benchmarks compare, on one CPU:
// the event loops with one loop, goroutine with one P (startPinnedGo).
var pinnedModels = []server{
	{name: "reactor", args: []string{"--model", "reactor", "--loops", "1"}},
	{name: "uring", args: []string{"--model", "uring", "--loops", "1"}},
	{name: "goroutine", args: []string{"--model", "goroutine"}},
}

// loadOnCPU1 skips b on a machine with fewer than 2 CPUs; otherwise it
// pins this process, the load, to CPU 1 with one P until b ends, so that
// the server under test has CPU 0 (child.Pin) to itself.
func loadOnCPU1(b *testing.B) {
	if runtime.NumCPU() < 2 {
		b.Skip("needs 2 CPUs: one for the server, one for the load")
	}
	prev := runtime.GOMAXPROCS(1)
	b.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	pinThreads(b, os.Getpid(), 1)
}

// conns are the connection counts every server is measured at.
var conns = []int{100, 1000}

// server is a server under test: a tcplab binary and its serve
// arguments, or nil arguments for the C reference.
type server struct {
	name string
	bin  string
	args []string
}

// logRatios prints each server's CPU per round trip against ref's
// measured in the same run, if it was, and after each figure what extra
// says of it (if set; its key is the server's name, "/", the connection
// count). It prints to stdout, not b.Log, so that it shows without -v.
func logRatios(b *testing.B, what string, cpu map[string]float64, names []string, ref string, extra func(key string) string) {
	var sb strings.Builder
	for _, name := range names {
		fmt.Fprintf(&sb, "\n%-15s", name)
		for _, n := range conns {
			key := "/" + strconv.Itoa(n)
			us, ok := cpu[name+key]
			r, hasRef := cpu[ref+key]
			switch {
			case !ok:
				fmt.Fprintf(&sb, "  %4d conns: not run      ", n)
			case hasRef && r > 0:
				fmt.Fprintf(&sb, "  %4d conns: %5.2f us %5.2fx", n, us, us/r)
			default:
				fmt.Fprintf(&sb, "  %4d conns: %5.2f us      ", n, us)
			}
			if extra != nil && ok {
				sb.WriteString(extra(name + key))
			}
		}
	}
	fmt.Fprintf(os.Stdout, "%s: %s:%s\n", b.Name(), what, sb.String())
}

// serversUnderTest returns the names of the pinned models (pinnedModels)
// and the servers the ping-pong benchmarks run: each model on each build
// (builds), then the C reference.
func serversUnderTest(b *testing.B) (models []string, servers []server) {
	bins := builds(b)
	for _, m := range pinnedModels {
		models = append(models, m.name)
		for _, bl := range bins {
			servers = append(servers, server{name: runName(m.name, bl), bin: bl.bin, args: m.args})
		}
	}
	return models, append(servers, server{name: "cecho"})
}

// startAny starts s, a tcplab echo server with one P (as on one CPU) or
// the C reference, not yet pinned. It skips the benchmark if s cannot
// run here.
func startAny(b *testing.B, s server) *child {
	c, skip := tryStart(b, s)
	if skip != "" {
		b.Skip(skip)
	}
	return c
}

// tryStart is startAny returning, instead of skipping, why s cannot run
// on this machine (uring where the kernel refuses io_uring; the C server
// without cc).
func tryStart(b *testing.B, s server) (*child, string) {
	if s.args == nil {
		bin, err := tryBuild("cecho")
		if skip, ok := err.(errSkip); ok {
			return nil, skip.msg
		}
		if err != nil {
			b.Fatal(err)
		}
		return tryServer(b, bin, "127.0.0.1", "0")
	}
	b.Setenv("GOMAXPROCS", "1")
	return tryServer(b, s.bin, append([]string{"serve", "--app", "echo", "--addr", "127.0.0.1:0",
		"--backlog", "4096"}, s.args...)...)
}

// startPinnedGo starts a Go server with one P, as on one CPU.
func startPinnedGo(b *testing.B, bin string, args ...string) *child {
	b.Setenv("GOMAXPROCS", "1")
	return startServer(b, bin, args...)
}

// pingPong runs the ping-pong over n connections and returns the server's
// CPU microseconds per round trip.
func pingPong(b *testing.B, srv *child, n int) float64 {
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := dial(srv.Addr, i)
		if err != nil {
			b.Fatal(err)
		}
		conns[i] = c
		defer c.Close()
	}
	return roundTrips(b, srv, conns, nil)
}

// roundTrips runs the closed-loop 64-byte ping-pong on conns, b.N round
// trips in all, after one on each connection so every one is set up (then
// it calls warmed, if set), and returns the server's CPU microseconds per
// round trip.
func roundTrips(b *testing.B, srv *child, conns []net.Conn, warmed func()) float64 {
	n := len(conns)
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
	if warmed != nil {
		warmed()
	}
	b.ResetTimer()
	cpu0 := srv.CPU(b)
	elapsed := run(b.N)
	cpu := srv.CPU(b) - cpu0
	b.StopTimer()
	perRT := float64(cpu.Microseconds()) / float64(b.N)
	b.ReportMetric(perRT, "server-us/rt")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rt/s")
	return perRT
}
