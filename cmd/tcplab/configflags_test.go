package main

import (
	"strings"
	"testing"

	"github.com/tcplab/tcplab/engine"
)

// TestConfigErrorsNameTheFlag: the engine's errors name Config fields;
// serve's name the flags that set them, with the value typed.
func TestConfigErrorsNameTheFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--write-timeout", "0"}, "--write-timeout 0s: must be positive"},
		{[]string{"serve", "--drain-timeout", "-1s"}, "--drain-timeout -1s: must not be negative"},
		{[]string{"serve", "--balance", "random"}, `--balance "random": want round-robin or least-conns`},
		{[]string{"serve", "--loops", "0"}, "--loops 0: must be at least 1"},
		{[]string{"serve", "--tls-key", "key.pem"}, "--tls-cert, --tls-key: give both or neither"},
		{[]string{"serve", "--frame-timeout", "-1s"}, "--frame-timeout -1s: want 0 (off) or a positive duration"},
	} {
		code, _, stderr := runCmd(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, "Config.") {
			t.Errorf("%q: exit %d, %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

// TestOffFlagsTurnSettingsOff: a 0 given to a flag whose 0 means off
// reaches the engine as its negative "off", not as its zero "default".
func TestOffFlagsTurnSettingsOff(t *testing.T) {
	cfg := engine.Config{}.WithDefaults()
	cfg.MaxConnsPerIP, cfg.ConnRate, cfg.FrameTimeout = 0, 0, 0
	if err := checkConfig(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.MaxConnsPerIP >= 0 || cfg.ConnRate >= 0 || cfg.FrameTimeout >= 0 {
		t.Fatalf("MaxConnsPerIP %d, ConnRate %v, FrameTimeout %v: want each negative (off)",
			cfg.MaxConnsPerIP, cfg.ConnRate, cfg.FrameTimeout)
	}
}
