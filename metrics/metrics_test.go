package metrics_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tcplab/tcplab/app/chat"
	"github.com/tcplab/tcplab/conformance"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/internal/testkit"
	"github.com/tcplab/tcplab/metrics"
)

// TestMain runs the tests under goleak (conformance.Main).
func TestMain(m *testing.M) { conformance.Main(m) }

// serveMetrics starts m's HTTP endpoint on a loopback port.
func serveMetrics(t *testing.T, m *metrics.Metrics, pprof bool) string {
	t.Helper()
	e, err := m.Serve("127.0.0.1:0", pprof)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testkit.Bound)
		defer cancel()
		if err := e.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return "http://" + e.Addr().String()
}

// eventually waits until the gathered metrics satisfy ok.
func eventually(t *testing.T, m *metrics.Metrics, what string, ok func(map[string]float64) bool) {
	t.Helper()
	testkit.Eventually(t, testkit.Bound, what, func() error {
		got, err := m.Gather()
		if err != nil {
			t.Fatal(err)
		}
		if !ok(got) {
			return fmt.Errorf("metrics %v", got)
		}
		return nil
	})
}

// dialLines connects a line client to addr.
func dialLines(t *testing.T, addr string) *testkit.Client {
	t.Helper()
	return testkit.Dial(t, addr, frame.Line)
}

// TestChatCounters drives a chat server on a blocking model and on the
// event loops (epoll and io_uring) and checks each counter against what
// the clients did.
func TestChatCounters(t *testing.T) {
	for _, model := range []string{"goroutine", "reactor", "uring"} {
		t.Run(model, func(t *testing.T) {
			m := metrics.New(model, "chat")
			h, err := chat.New(chat.Options{Framing: frame.Line, MsgRate: 0.001, MsgBurst: 4})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.Close() })
			cfg := engine.Config{MaxConnsPerIP: 2, LimitLoopback: true, ObserveQueue: m.ObserveQueue}
			s := conformance.Start(t, model, h, cfg)
			if err := m.Watch(s, h); err != nil {
				t.Fatal(err)
			}
			url := serveMetrics(t, m, false)

			a := dialLines(t, s.Addr().String())
			a.NextPrefix("HELLO ")
			b := dialLines(t, s.Addr().String())
			b.NextPrefix("HELLO ")
			a.NextPrefix("JOIN lobby ")
			// A third connection from 127.0.0.1 is over --max-conns-per-ip.
			c := dialLines(t, s.Addr().String())
			c.NextPrefix("ERR too-many-connections ")
			c.NextPrefix("BYE too-many-connections")

			// Four messages pass the rate limit (burst 4), the fifth does
			// not; each that passes reaches b.
			a.MustSend("one", "two", "three", "four", "five")
			for _, w := range []string{"one", "two", "three", "four"} {
				b.NextPrefix("MSG lobby guest-1 " + w)
			}
			a.NextPrefix("ERR rate-limited ")

			eventually(t, m, "counters after the traffic", func(g map[string]float64) bool {
				return g["tcplab_connections_accepted_total"] == 2 &&
					g["tcplab_connections_open"] == 2 &&
					g["tcplab_connections_refused_total{reason=per-ip-limit}"] == 1 &&
					g["tcplab_connections_refused_total{reason=server-full}"] == 0 &&
					g["tcplab_frames_in_total"] == 5 &&
					// HELLO x2, JOIN to a, four MSG to b, ERR rate-limited
					g["tcplab_frames_out_total"] == 8 &&
					g["tcplab_rate_limited_messages_total"] == 1 &&
					g["tcplab_bytes_in_total"] == float64(len("one\ntwo\nthree\nfour\nfive\n")) &&
					g["tcplab_bytes_out_total"] > 0 &&
					g["tcplab_outbound_queue_bytes_count"] >= 1 &&
					g["tcplab_accept_errors_total"] == 0
			})

			code, body := testkit.Get(t, url+"/metrics")
			if code != http.StatusOK {
				t.Fatalf("/metrics: %d", code)
			}
			for _, want := range []string{
				`tcplab_connections_refused_total{app="chat",model="` + model + `",reason="per-ip-limit"} 1`,
				`tcplab_rate_limited_messages_total{app="chat",model="` + model + `"} 1`,
				`tcplab_outbound_queue_bytes_bucket{app="chat",model="` + model + `",le="64"}`,
				`tcplab_slow_consumer_disconnects_total{app="chat",model="` + model + `"} 0`,
				`tcplab_go_goroutines{app="chat",model="` + model + `"}`,
			} {
				if !strings.Contains(body, want+"\n") && !strings.Contains(body, want+" ") {
					t.Errorf("/metrics lacks %s", want)
				}
			}
			for _, line := range strings.Split(body, "\n") {
				if line != "" && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, metrics.Prefix) {
					t.Errorf("metric without the %s prefix: %s", metrics.Prefix, line)
				}
				if line != "" && !strings.HasPrefix(line, "#") && !strings.Contains(line, `model="`+model+`"`) {
					t.Errorf("metric without the model label: %s", line)
				}
			}
			if code, _ := testkit.Get(t, url+"/debug/pprof/"); code != http.StatusNotFound {
				t.Errorf("/debug/pprof/ without --pprof: %d, want 404", code)
			}
		})
	}
}

// TestSlowConsumerAndFrameTimeout checks the engine-level counters with
// the conformance probe handler: one connection closed for overflow, one
// for an unfinished frame, and one pause of reading of 50 ms (a stall).
func TestSlowConsumerAndFrameTimeout(t *testing.T) {
	for _, model := range []string{"goroutine", "reactor-pool"} {
		t.Run(model, func(t *testing.T) {
			m := metrics.New(model, "probe")
			h := conformance.Probe()
			cfg := engine.Config{MaxPending: 64 << 10, FrameTimeout: 200 * time.Millisecond, ObserveQueue: m.ObserveQueue}
			s := conformance.Start(t, model, h, cfg)
			if err := m.Watch(s, h); err != nil {
				t.Fatal(err)
			}
			slow := dialLines(t, s.Addr().String())
			slow.MustSend(fmt.Sprintf("flood %d 1", 64<<10+1))
			if rest, _ := io.ReadAll(slow.Conn()); !strings.HasSuffix(string(rest), "BYE outbound buffer over its limit (slow consumer)\n") {
				t.Fatalf("overflowed connection ended with %q", rest)
			}
			trickle := dialLines(t, s.Addr().String())
			trickle.Write([]byte("pi"))
			trickle.End("BYE frame not completed in time") // an unfinished frame
			paused := dialLines(t, s.Addr().String())
			paused.MustSend("pause 50", "ping")
			paused.Next("pausing")
			paused.Next("pong")
			paused.Close()
			eventually(t, m, "counters", func(g map[string]float64) bool {
				return g["tcplab_slow_consumer_disconnects_total"] == 1 &&
					g["tcplab_frame_timeouts_total"] == 1 &&
					g["tcplab_fanout_stalls_total"] == 1 &&
					g["tcplab_fanout_stall_seconds_total"] == 0.05 &&
					g["tcplab_connections_open"] == 0
			})
		})
	}
}

// TestWriteTimeouts checks the write-timeout counter: a peer that asks
// for 16 MiB, more than the kernel buffers of a loopback connection hold,
// and reads nothing is closed once no byte has gone for --write-timeout.
func TestWriteTimeouts(t *testing.T) {
	for _, model := range []string{"goroutine", "reactor"} {
		t.Run(model, func(t *testing.T) {
			m := metrics.New(model, "probe")
			h := conformance.Probe()
			cfg := engine.Config{MaxPending: 32 << 20, WriteTimeout: 200 * time.Millisecond}
			s := conformance.Start(t, model, h, cfg)
			if err := m.Watch(s, h); err != nil {
				t.Fatal(err)
			}
			stalled := dialLines(t, s.Addr().String())
			stalled.MustSend(fmt.Sprintf("flood %d 256", 64<<10))
			eventually(t, m, "counters", func(g map[string]float64) bool {
				return g["tcplab_write_timeouts_total"] == 1 && g["tcplab_connections_open"] == 0
			})
		})
	}
}

// TestOffloads checks the offload counters: every connection of the
// conformance offload probe offloads its greeting, and "p" offloads a
// function that panics.
func TestOffloads(t *testing.T) {
	for _, model := range []string{"goroutine", "reactor"} {
		t.Run(model, func(t *testing.T) {
			m := metrics.New(model, "offload")
			h := conformance.OffloadProbe()
			s := conformance.Start(t, model, h, engine.Config{})
			if err := m.Watch(s, h); err != nil {
				t.Fatal(err)
			}
			c := dialLines(t, s.Addr().String())
			c.MustSend("p")
			c.End("hello", "BYE offloaded function panicked: probe panic")
			eventually(t, m, "counters", func(g map[string]float64) bool {
				return g["tcplab_offloaded_functions_total"] == 2 && g["tcplab_offload_panics_total"] == 1
			})
		})
	}
}

func TestPprofBehindTheFlag(t *testing.T) {
	m := metrics.New("goroutine", "echo")
	url := serveMetrics(t, m, true)
	code, body := testkit.Get(t, url+"/debug/pprof/")
	if code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Fatalf("/debug/pprof/: %d %q", code, body[:min(len(body), 200)])
	}
	if code, _ := testkit.Get(t, url+"/debug/pprof/cmdline"); code != http.StatusOK {
		t.Fatalf("/debug/pprof/cmdline: %d", code)
	}
}

func TestLoopbackDefault(t *testing.T) {
	for in, want := range map[string]string{
		":9100":          "127.0.0.1:9100",
		"9100":           "127.0.0.1:9100",
		"0.0.0.0:9100":   "0.0.0.0:9100",
		"[::1]:9100":     "[::1]:9100",
		"localhost:9100": "localhost:9100",
	} {
		if got, err := metrics.LoopbackDefault(in); got != want || err != nil {
			t.Errorf("%q: %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "host", "1.2.3.4", "a:b:c"} {
		if _, err := metrics.LoopbackDefault(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestProcessModelsCountTheirChildren serves the probe under fork and
// prefork, where the child processes serve and count: the parent's
// metrics must show the connections, bytes and app frames (pings and
// pongs) of its children.
func TestProcessModelsCountTheirChildren(t *testing.T) {
	const clients, pings = 2, 3
	for _, model := range []string{"fork", "prefork"} {
		t.Run(model, func(t *testing.T) {
			m := metrics.New(model, "probe")
			h := conformance.Probe()
			s := conformance.Start(t, model, h, engine.Config{App: "probe", Workers: 2})
			if err := m.Watch(s, h); err != nil {
				t.Fatal(err)
			}
			for range clients {
				c := dialLines(t, s.Addr().String())
				for range pings {
					c.MustSend("ping")
					c.NextPrefix("pong")
				}
			}
			eventually(t, m, "the children's counters", func(g map[string]float64) bool {
				return g["tcplab_connections_accepted_total"] == clients &&
					g["tcplab_frames_in_total"] == clients*pings &&
					g["tcplab_frames_out_total"] == clients*pings &&
					g["tcplab_bytes_in_total"] == clients*pings*float64(len("ping\n")) &&
					g["tcplab_bytes_out_total"] == clients*pings*float64(len("pong\n"))
			})
		})
	}
}
