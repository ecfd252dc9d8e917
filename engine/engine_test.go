package engine_test

import (
	"errors"
	"testing"

	"github.com/tcplab/tcplab/app/echo"
	"github.com/tcplab/tcplab/conformance"
	"github.com/tcplab/tcplab/engine"
)

// TestMain serves as a fork or prefork child when the test binary is
// re-executed as one, and otherwise runs the tests under goleak.
func TestMain(m *testing.M) { conformance.Main(m) }

func TestListenRefusesBadInput(t *testing.T) {
	if _, err := engine.Listen("no-such-model", echo.New(), engine.Config{}); !errors.Is(err, engine.ErrUnknownModel) {
		t.Errorf("unknown model: %v", err)
	}
	if _, err := engine.Listen("goroutine", echo.New(), engine.Config{Addr: "127.0.0.1:0", Balance: "random"}); err == nil {
		t.Error("bad --balance accepted")
	}
	if _, err := engine.Listen("goroutine", echo.New(), engine.Config{Addr: "127.0.0.1:0", Backlog: -1}); err == nil {
		t.Error("negative backlog accepted")
	}
}

func TestDefaults(t *testing.T) {
	c := engine.Config{}.WithDefaults()
	if c.Addr != "127.0.0.1:7000" || c.Backlog != 1024 || c.MaxPending != 1<<20 || c.Workers < 1 || c.Loops < 1 {
		t.Fatalf("defaults %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}
