package main

// These tests drive the real chat app with `tcplab load --app chat` and
// `tcplab bench --app chat`.

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tcplab/tcplab/benchgrid"
	"github.com/tcplab/tcplab/report"
)

func chatLoad(t *testing.T, args ...string) map[string]any {
	t.Helper()
	code, out, stderr := runCmd(t, append([]string{"load", "--app", "chat", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var res map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatal(err)
	}
	return res
}

// TestChatLoadDeliversEveryMessageToEveryOtherMember: 20 members, 4
// senders under the server's rate limit; each message reaches the other 19.
func TestChatLoadDeliversEveryMessageToEveryOtherMember(t *testing.T) {
	for _, framing := range []string{"length", "line"} {
		t.Run(framing, func(t *testing.T) {
			addr := serve(t, "--addr", "127.0.0.1:0", "--app", "chat", "--framing", framing).Addr
			res := chatLoad(t, "--addr", addr, "--framing", framing, "--conns", "20", "--senders", "4",
				"--rate", "200", "--duration", "500ms")
			ingress, delivered := res["ingress_msgs"].(float64), res["delivered_msgs"].(float64)
			if res["ok_conns"] != 20.0 || res["failed_conns"] != 0.0 || res["dropped_conns"] != 0.0 {
				t.Fatalf("ok %v failed %v dropped %v", res["ok_conns"], res["failed_conns"], res["dropped_conns"])
			}
			if ingress == 0 || delivered != 19*ingress {
				t.Errorf("ingress %v, delivered %v: want 19 deliveries per message", ingress, delivered)
			}
			if res["fairness_min"] != 1.0 || res["fairness_max"] != 1.0 {
				t.Errorf("fairness %v..%v, want 1..1", res["fairness_min"], res["fairness_max"])
			}
			if lat := res["latency_us"].(map[string]any); lat["p50"].(float64) <= 0 {
				t.Errorf("latency %v", lat)
			}
		})
	}
}

// TestChatLoadJoinsAnotherRoom joins a room other than the lobby first.
func TestChatLoadJoinsAnotherRoom(t *testing.T) {
	addr := serve(t, "--addr", "127.0.0.1:0", "--app", "chat").Addr
	res := chatLoad(t, "--addr", addr, "--conns", "5", "--senders", "1", "--rate", "20", "--duration", "300ms", "--room", "bench")
	if res["ok_conns"] != 5.0 || res["delivered_msgs"].(float64) != 4*res["ingress_msgs"].(float64) {
		t.Fatalf("ok %v, ingress %v, delivered %v", res["ok_conns"], res["ingress_msgs"], res["delivered_msgs"])
	}
}

// TestChatLoadCountsRateLimitedMessages sends faster than the server's
// per-connection limit allows.
func TestChatLoadCountsRateLimitedMessages(t *testing.T) {
	addr := serve(t, "--addr", "127.0.0.1:0", "--app", "chat", "--msg-rate", "10", "--msg-burst", "1").Addr
	res := chatLoad(t, "--addr", addr, "--conns", "3", "--senders", "1", "--rate", "200", "--duration", "300ms")
	errs, _ := res["server_errors"].(map[string]any)
	if errs["rate-limited"] == nil || errs["rate-limited"].(float64) == 0 {
		t.Fatalf("server_errors %v, want rate-limited", res["server_errors"])
	}
	if res["fairness_min"] != 1.0 {
		t.Errorf("fairness_min %v: receivers should get every message the server accepted", res["fairness_min"])
	}
}

// TestBenchRunsChatCells runs a one-cell chat grid.
func TestBenchRunsChatCells(t *testing.T) {
	t.Setenv("TCPLAB_TEST_MAIN", "1")
	out := t.TempDir()
	code, stdout, stderr := runCmd(t, "bench", "--app", "chat", "--models", "goroutine", "--clients", "10",
		"--backlog", "64", "--duration", "300ms", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	res := readResults(t, out)
	if len(res.Cells) != 1 || res.Cells[0].Status != benchgrid.StatusOK || res.Cells[0].Load.Delivered == 0 {
		t.Fatalf("cells %+v", res.Cells)
	}
	if err := report.Offline(out); err != nil {
		t.Fatal(err)
	}
}
