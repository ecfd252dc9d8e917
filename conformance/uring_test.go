package conformance

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/internal/uring/uringtest"
)

// TestRefusedIOUringIsSkippedWithTheCause runs the whole suite against the
// uring model in a child process where a seccomp filter makes the kernel
// refuse io_uring (as container runtimes do). Every case that starts the
// model must be reported skipped, with the kernel's refusal as the cause:
// none may pass, none may fail.
func TestRefusedIOUringIsSkippedWithTheCause(t *testing.T) {
	if os.Getenv(uringtest.Environment) != "" {
		t.Skip("in the child")
	}
	if _, err := engine.Lookup("uring"); err != nil {
		t.Skip("no uring model on this platform")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSuiteUnderRefusal$", "-test.v", "-test.timeout=60s")
	cmd.Env = append(os.Environ(), uringtest.Environment+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	cause := "model uring: model not supported here: io_uring unavailable: io_uring_setup: io_uring is not permitted"
	skipped := regexp.MustCompile(`(?m)^\s*--- SKIP: TestSuiteUnderRefusal/\w+/`).FindAllIndex(out, -1)
	withCause := strings.Count(string(out), cause)
	leafPass := regexp.MustCompile(`(?m)^\s*--- PASS: TestSuiteUnderRefusal/\w+/.*$`).Find(out)
	if len(skipped) < 20 || withCause < len(skipped) || leafPass != nil || strings.Contains(string(out), "--- FAIL") {
		t.Fatalf("want every case skipped with the cause %q; %d skipped, %d with the cause, a case passed: %q\n%s",
			cause, len(skipped), withCause, leafPass, out)
	}
	t.Logf("%d cases skipped, each naming the cause", len(skipped))
}

// TestSuiteUnderRefusal is the child's side: it denies io_uring to this
// process and runs the suite.
func TestSuiteUnderRefusal(t *testing.T) {
	if os.Getenv(uringtest.Environment) == "" {
		t.Skip("run by TestRefusedIOUringIsSkippedWithTheCause in a child process")
	}
	if err := uringtest.DenyIOUring(); err != nil {
		t.Fatal(err)
	}
	Run(t, "uring")
}
