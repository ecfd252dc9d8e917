package bench

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// baseEnv names a second tcplab binary, another build (the one before a
// change, say), to measure beside this tree's in one run: an A/B.
// BenchmarkPingPong and TestCapacity then run each tcplab server of both
// builds alternately, base then this one, twice (old, new, old, new), and
// print this build's figures as ratios to the base build's:
//
//	git worktree add /tmp/base base-21 && (cd /tmp/base && go build -o /tmp/tcplab-base ./cmd/tcplab)
//	TCPLAB_BENCH_BASE=/tmp/tcplab-base go test ./bench/ -run '^$' -bench PingPong -benchtime 3s
//	TCPLAB_BENCH_BASE=/tmp/tcplab-base go test ./bench/ -run Capacity -v
//
// The base binary may predate serve's readiness notification: startServer
// then gives it a free port and waits until that port accepts.
const baseEnv = "TCPLAB_BENCH_BASE"

// build is a tcplab binary under test: name is "" without a base build,
// else "old" (the base) or "new" (this tree's) and the round.
type build struct{ name, bin string }

// builds returns the tcplab binaries to measure, in the order they run:
// this tree's alone, or with a base build, old and new alternately, twice.
func builds(t testing.TB) []build {
	t.Helper()
	cur := buildBinary(t, "tcplab")
	base := os.Getenv(baseEnv)
	if base == "" {
		return []build{{"", cur}}
	}
	if st, err := os.Stat(base); err != nil || st.IsDir() {
		t.Fatalf("%s=%s: not a binary (%v)", baseEnv, base, err)
	}
	return []build{{"old1", base}, {"new1", cur}, {"old2", base}, {"new2", cur}}
}

// runName is the name of model's run on build b.
func runName(model string, b build) string {
	if b.name == "" {
		return model
	}
	return model + "-" + b.name
}

// abRatios formats, for each model run on builds old and new, the new
// build's mean figure over its rounds as a ratio to the old build's, for
// each of keys (figure names under runName(model, b)+"/"+key). It returns
// "" without a base build.
func abRatios(got map[string]float64, models, keys []string, unit string) string {
	if os.Getenv(baseEnv) == "" {
		return ""
	}
	var sb strings.Builder
	for _, m := range models {
		fmt.Fprintf(&sb, "\n%-13s", m)
		for _, k := range keys {
			old, oldOK := mean(got, m+"-old", k)
			cur, curOK := mean(got, m+"-new", k)
			if !oldOK || !curOK || old == 0 {
				fmt.Fprintf(&sb, "  %s: not run", k)
				continue
			}
			fmt.Fprintf(&sb, "  %s: %.2f -> %.2f %s (%.3fx)", k, old, cur, unit, cur/old)
		}
	}
	return sb.String()
}

// mean returns the mean of the figures prefix+round+"/"+key over rounds
// 1 and 2, and whether there was one.
func mean(got map[string]float64, prefix, key string) (float64, bool) {
	sum, n := 0.0, 0
	for _, round := range []string{"1", "2"} {
		if v, ok := got[prefix+round+"/"+key]; ok {
			sum += v
			n++
		}
	}
	if n == 0 {
		return 0, false
	}
	return sum / float64(n), true
}
