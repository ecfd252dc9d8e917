//go:build linux

package uringtest

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/tcplab/tcplab/internal/uring"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestDenied re-executes this test binary with io_uring denied; the child
// (TestChildSeesRefusal) checks that uring.New fails with a cause naming
// the refusal, and that other system calls still work.
func TestDenied(t *testing.T) {
	if os.Getenv(Environment) != "" {
		t.Skip("in the child")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildSeesRefusal$", "-test.v")
	cmd.Env = append(os.Environ(), Environment+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestChildSeesRefusal") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func TestChildSeesRefusal(t *testing.T) {
	if os.Getenv(Environment) == "" {
		t.Skip("run by TestDenied in a child process")
	}
	if err := DenyIOUring(); err != nil {
		t.Fatal(err)
	}
	_, err := uring.New(4, 0, 0)
	if !errors.Is(err, uring.ErrUnavailable) {
		t.Fatalf("uring.New under the filter: %v, want ErrUnavailable", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "not permitted") || strings.Contains(msg, "\n") {
		t.Fatalf("error %q: want one line naming the refusal", msg)
	}
	t.Logf("refused as expected: %v", err)
	if _, err := os.ReadFile("/proc/self/status"); err != nil {
		t.Fatalf("other system calls fail too: %v", err)
	}
}
