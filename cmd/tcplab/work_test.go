package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// loadJSON runs "tcplab load args... --json" and decodes its last line.
func loadJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	code, out, stderr := runCmd(t, append([]string{"load", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("load %q: exit %d\n%s\n%s", args, code, out, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &got); err != nil {
		t.Fatalf("last line %q: %v", lines[len(lines)-1], err)
	}
	return got
}

// TestLoadWorkReportsItsSpecsAndClasses drives "serve --app work" with a
// light and a heavy class, checks the JSON, and that the server's
// --max-sha refuses a request over it (every connection fails on it).
func TestLoadWorkReportsItsSpecsAndClasses(t *testing.T) {
	addr := serve(t, "--addr", "127.0.0.1:0", "--app", "work", "--max-sha", "100").Addr
	got := loadJSON(t, "--addr", addr, "--app", "work", "--conns", "3", "--duration", "300ms",
		"--work", "sha:100", "--heavy", "1", "--heavy-work", "sleep:2ms")
	if w, _ := got["work"].(map[string]any); w["light"] != "sha:100" || w["heavy"] != "sleep:2ms" || w["heavy_conns"] != 1.0 {
		t.Errorf("work %v", got["work"])
	}
	classes, _ := got["classes"].(map[string]any)
	for _, c := range []string{"light", "heavy"} {
		cl, _ := classes[c].(map[string]any)
		lat, _ := cl["latency_us"].(map[string]any)
		for _, k := range []string{"p50", "p90", "p99", "p999", "max"} {
			if v, ok := lat[k].(float64); !ok || v <= 0 {
				t.Errorf("classes.%s.latency_us.%s: %v", c, k, lat[k])
			}
		}
	}
	if got["ok_conns"] != 3.0 || got["dropped_conns"] != 0.0 {
		t.Errorf("ok %v dropped %v (%v)", got["ok_conns"], got["dropped_conns"], got["failures"])
	}
	got = loadJSON(t, "--addr", addr, "--app", "work", "--conns", "2", "--duration", "200ms", "--work", "sha:101")
	if f, _ := got["failures"].(map[string]any); f["err too-much"] != 2.0 {
		t.Errorf("sha:101 against --max-sha 100: failures %v", got["failures"])
	}
}

// TestWorkOnProcessModelsHasTheServersLimits: a fork or prefork child
// parses its parent's command line, so it applies --max-sha and
// --max-sleep too. A request within the limits is answered (the run lasts
// a second, time for fork to start its child and serve some), one over
// them fails the connection with ERR too-much.
func TestWorkOnProcessModelsHasTheServersLimits(t *testing.T) {
	for _, model := range []string{"fork", "prefork"} {
		t.Run(model, func(t *testing.T) {
			s := serve(t, "--addr", "127.0.0.1:0", "--app", "work", "--model", model, "--workers", "2", "--max-sha", "10", "--max-sleep", "1ms")
			addr := s.Addr
			for spec, refused := range map[string]bool{"sha:10": false, "sha:11": true, "sleep:1ms": false, "sleep:1001us": true} {
				got := loadJSON(t, "--addr", addr, "--app", "work", "--conns", "1", "--duration", "1s", "--work", spec)
				f, _ := got["failures"].(map[string]any)
				light, _ := got["classes"].(map[string]any)["light"].(map[string]any)
				answered := light["msgs"].(float64) > 0
				if got["ok_conns"] != 1.0 || refused != (f["err too-much"] == 1.0) || refused == answered {
					t.Errorf("%s: ok %v, failures %v, %v replies; want refused %v", spec, got["ok_conns"], f, light["msgs"], refused)
				}
			}
			stop(t, s)
		})
	}
}

func TestWorkFlagsBadInputExits2WithOneLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"load", "--app", "work", "--work", "sha:x"}, `--work "sha:x"`},
		{[]string{"load", "--app", "work", "--work", "sleep:5"}, `--work "sleep:5"`},
		{[]string{"load", "--app", "work", "--work", "cpu"}, `--work "cpu"`},
		{[]string{"load", "--app", "work", "--heavy-work", "sha:0", "--heavy", "1"}, `--heavy-work "sha:0"`},
		{[]string{"load", "--app", "work", "--heavy", "1"}, "--heavy 1 needs --heavy-work"},
		{[]string{"load", "--app", "work", "--conns", "2", "--heavy", "3", "--heavy-work", "echo"}, "--heavy 3"},
		{[]string{"load", "--work", "echo"}, "--work applies to --app work"},
		{[]string{"load", "--app", "chat", "--heavy", "1"}, "--heavy applies to --app work"},
		{[]string{"serve", "--app", "work", "--max-sha", "0"}, "--max-sha 0"},
		{[]string{"serve", "--app", "work", "--max-sleep", "0s"}, "--max-sleep 0s"},
		{[]string{"serve", "--app", "work", "--max-frame", "100"}, "--max-frame 100"},
	} {
		code, _, stderr := runCmd(t, tc.args...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], "tcplab: ") || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and one line with %q", tc.args, code, stderr, tc.want)
		}
	}
}

func TestWorkFlagsWithAnotherAppAreWarnedAbout(t *testing.T) {
	s := serve(t, "--addr", "127.0.0.1:0", "--app", "echo", "--max-sha", "5")
	stop(t, s)
	if log := s.Stderr(); !strings.Contains(log, "flag does not apply to this app") || !strings.Contains(log, "--max-sha") {
		t.Errorf("log: %s", log)
	}
}
