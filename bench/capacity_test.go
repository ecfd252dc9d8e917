package bench

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcplab/tcplab/internal/testkit"
)

const (
	// capacityConns is how many idle connections one server process must
	// hold: this machine's ulimit -n is 20000.
	capacityConns = 19000
	// maxBytesPerConn is the target RSS per idle connection.
	maxBytesPerConn = 2048
	// capacityWorkers dial and echo concurrently; the accept queue
	// (--backlog 4096) never overflows with this many in flight.
	capacityWorkers = 32
)

// TestCapacity runs each event-loop model in its own process, connects
// 19,000 clients from this one and leaves them idle, measures the server's
// memory per connection (RSS growth / connections), then has every client
// complete an echo round trip.
//
// With TCPLAB_BENCH_BASE naming another build's binary (see baseEnv),
// each model runs on both builds, old, new, old, new, and the test logs
// the new build's bytes per idle connection as a ratio to the old's.
func TestCapacity(t *testing.T) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < capacityConns+200 {
		t.Skipf("needs ulimit -n >= %d for the clients; have %d", capacityConns+200, lim.Cur)
	}
	bins := builds(t)
	models := []string{"reactor", "reactor-pool", "uring"}
	perConnOf := map[string]float64{} // by runName + "/rss"
	for _, model := range models {
		for _, bl := range bins {
			t.Run(runName(model, bl), func(t *testing.T) {
				perConnOf[runName(model, bl)+"/rss"] = capacity(t, bl.bin, model)
			})
		}
	}
	if ab := abRatios(perConnOf, models, []string{"rss"}, "B/conn"); ab != "" {
		t.Logf("RSS per idle connection, this build against %s, means of two rounds:%s", baseEnv, ab)
	}
}

// capacity runs model from bin as TestCapacity says, and returns the bytes
// of RSS per idle connection.
func capacity(t *testing.T, bin, model string) float64 {
	t.Helper()
	srv := startServer(t, bin, "serve", "--app", "echo", "--model", model,
		"--addr", "127.0.0.1:0", "--backlog", "4096")
	if lim, err := childNofile(srv.Pid); err != nil || lim < capacityConns+50 {
		t.Skipf("the server's ulimit -n is %d (%v); needs %d", lim, err, capacityConns+50)
	}
	// Warm up: one connection and one echo, so the baseline
	// includes the loops' buffers and the runtime's first arenas.
	warm := dialFrom(t, srv.Addr, 0)
	if err := echoOnce(warm, 0); err != nil {
		t.Fatalf("warm-up echo: %v", err)
	}
	baseFDs, baseRSS := srv.FDs(t), srv.RSS(t)

	conns := make([]net.Conn, capacityConns)
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	start := time.Now()
	parallel(t, capacityConns, func(i int) error {
		c, err := dial(srv.Addr, i)
		conns[i] = c
		return err
	})
	// Every client's connect has returned; wait until the server
	// has accepted them all (its descriptor count says so).
	testkit.Eventually(t, time.Minute, fmt.Sprintf("the server holds all %d connections", capacityConns), func() error {
		if held := srv.FDs(t) - baseFDs; held < capacityConns {
			return fmt.Errorf("it holds %d", held)
		}
		return nil
	})
	rss := srv.RSS(t)
	perConn := float64(rss-baseRSS) / capacityConns
	t.Logf("%s: %d idle connections in %v; server RSS %.1f MiB -> %.1f MiB: %.0f bytes per idle connection",
		model, capacityConns, time.Since(start).Round(time.Millisecond),
		float64(baseRSS)/(1<<20), float64(rss)/(1<<20), perConn)
	if perConn > maxBytesPerConn {
		t.Errorf("%.0f bytes of RSS per idle connection, want <= %d", perConn, maxBytesPerConn)
	}

	parallel(t, capacityConns, func(i int) error { return echoOnce(conns[i], i) })
	if err := echoOnce(warm, 1); err != nil {
		t.Fatalf("warm-up connection after the round: %v", err)
	}
	t.Logf("%s: all %d connections answered an echo", model, capacityConns)
	srv.Stop(t) // closes every connection: the clients leave no TIME_WAIT behind
	return perConn
}

// childNofile reads a process's soft RLIMIT_NOFILE.
func childNofile(pid int) (uint64, error) {
	var lim unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
		return 0, fmt.Errorf("prlimit: %w", err)
	}
	return lim.Cur, nil
}

// dial connects from one of 127.0.0.2..127.0.0.5, so the clients do not
// use up 127.0.0.1's ephemeral ports that other tests on the machine share.
func dial(addr string, i int) (net.Conn, error) {
	d := net.Dialer{
		Timeout:   20 * time.Second,
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%4))},
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return c, nil
}

func dialFrom(t *testing.T, addr string, i int) net.Conn {
	t.Helper()
	c, err := dial(addr, i)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echoOnce sends 8 bytes naming i and expects them back.
func echoOnce(c net.Conn, i int) error {
	var msg, got [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(i)*0x9E3779B97F4A7C15)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(msg[:]); err != nil {
		return fmt.Errorf("connection %d: write: %w", i, err)
	}
	if _, err := io.ReadFull(c, got[:]); err != nil {
		return fmt.Errorf("connection %d: read echo: %w", i, err)
	}
	if got != msg {
		return fmt.Errorf("connection %d: echo %x, want %x", i, got, msg)
	}
	return nil
}

// parallel runs f(0..n-1) on capacityWorkers goroutines and fails the test
// with the first error (the rest stop early).
func parallel(t testing.TB, n int, f func(i int) error) {
	t.Helper()
	var next atomic.Int64
	var failed atomic.Bool
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range capacityWorkers {
		wg.Go(func() {
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { first = err })
					failed.Store(true)
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}
