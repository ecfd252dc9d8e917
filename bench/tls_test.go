package bench

import (
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/tcplab/tcplab/internal/testkit/testcert"
)

// BenchmarkTLS measures TLS on the event loops against TLS on
// goroutines, with the plain reactor for reference: the 64-byte ping-pong
// of BenchmarkPingPong (server pinned to CPU 0 with GOMAXPROCS=1 and one
// loop, this process's clients on CPU 1) over 100 and over 1000 TLS
// connections. Each case starts its own server, so it also reports
//
//	server-us/rt  the server's user+system CPU per round trip
//	rss-B/conn    the server's RSS growth per connection, from before the
//	              clients connect to when each has made one round trip
//	              and is idle (handshakes done)
//
// and the run ends with a table of both, CPU as a ratio to the plain
// reactor's in the same run:
//
//	go test ./bench/ -run '^$' -bench TLS -benchtime 3s
//
// The clients shake hands 32 at a time; before the baseline, 32 clients
// connect, make a round trip and leave, so the figure per connection does
// not carry the server's warm-up (its first buffers, the handshake
// workers).
func BenchmarkTLS(b *testing.B) {
	loadOnCPU1(b)
	cert := testcert.New(b)
	withTLS := []string{"--tls-cert", cert.CertFile, "--tls-key", cert.KeyFile}
	servers := []struct {
		name string
		args []string
		tls  bool
	}{
		{"reactor+tls", append([]string{"--model", "reactor", "--loops", "1"}, withTLS...), true},
		{"uring+tls", append([]string{"--model", "uring", "--loops", "1"}, withTLS...), true},
		{"goroutine+tls", append([]string{"--model", "goroutine"}, withTLS...), true},
		{"reactor", []string{"--model", "reactor", "--loops", "1"}, false},
	}
	bin := buildBinary(b, "tcplab")
	cpu, rss := map[string]float64{}, map[string]float64{}
	for _, s := range servers {
		connect := func(addr string, i int) (net.Conn, error) { return dial(addr, i) }
		if s.tls {
			connect = func(addr string, i int) (net.Conn, error) { return dialTLS(addr, i, cert.ClientConfig()) }
		}
		for _, n := range conns {
			key := s.name + "/" + strconv.Itoa(n)
			b.Run(s.name+"/"+strconv.Itoa(n)+"conns", func(b *testing.B) {
				args := append([]string{"serve", "--app", "echo", "--addr", "127.0.0.1:0", "--backlog", "4096",
					"--handshake-timeout", "1m"}, s.args...)
				srv := startPinnedGo(b, bin, args...)
				srv.Pin(b, 0)
				warm := connectAll(b, srv.Addr, capacityWorkers, connect)
				parallel(b, len(warm), func(i int) error { return echoOnce(warm[i], i) })
				closeAll(warm)
				base := srv.RSS(b)
				cs := connectAll(b, srv.Addr, n, connect)
				cpu[key] = roundTrips(b, srv, cs, func() {
					rss[key] = float64(srv.RSS(b)-base) / float64(n)
					b.ReportMetric(rss[key], "rss-B/conn")
				})
			})
		}
	}
	var names []string
	for _, s := range servers {
		names = append(names, s.name)
	}
	logRatios(b, "server CPU per round trip, its ratio to plain reactor's in this run, and RSS per idle connection", cpu, names, "reactor",
		func(key string) string { return fmt.Sprintf(" %7.0f B/conn", rss[key]) })
}

// dialTLS connects as dial does and finishes a TLS handshake.
func dialTLS(addr string, i int, conf *tls.Config) (net.Conn, error) {
	c, err := dial(addr, i)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, conf)
	tc.SetDeadline(time.Now().Add(20 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	tc.SetDeadline(time.Time{})
	return tc, nil
}

// connectAll makes n connections to addr with connect, capacityWorkers at
// a time, and closes them when the benchmark ends.
func connectAll(b *testing.B, addr string, n int, connect func(addr string, i int) (net.Conn, error)) []net.Conn {
	cs := make([]net.Conn, n)
	b.Cleanup(func() { closeAll(cs) })
	parallel(b, n, func(i int) error {
		c, err := connect(addr, i)
		cs[i] = c
		return err
	})
	return cs
}

func closeAll(cs []net.Conn) {
	for _, c := range cs {
		if c != nil {
			c.Close()
		}
	}
}
