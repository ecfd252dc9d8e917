package testkit

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tcplab/tcplab/internal/launch"
	"github.com/tcplab/tcplab/internal/sdnotify"
)

// TestMain fails the package's tests if any leaves a goroutine running.
func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeEnv); mode != "" {
		os.Exit(fakeServer(mode))
	}
	goleak.VerifyTestMain(m)
}

// recorder is a testing.TB whose Fatalf records instead of failing.
type recorder struct {
	testing.TB
	fatal string
}

func (r *recorder) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }

func TestEventuallyWaitsForTheCondition(t *testing.T) {
	calls := 0
	r := &recorder{TB: t}
	Eventually(r, Bound, "the third call", func() error {
		if calls++; calls < 3 {
			return ErrNotYet
		}
		return nil
	})
	if r.fatal != "" || calls != 3 {
		t.Fatalf("after %d calls: failed with %q, want success at the third", calls, r.fatal)
	}
}

func TestEventuallyFailsWithWhatAndTheLastError(t *testing.T) {
	r := &recorder{TB: t}
	n := 0
	Eventually(r, 30*time.Millisecond, "the counter reaches 1000", func() error {
		n++
		return fmt.Errorf("it is %d", n)
	})
	if !strings.HasPrefix(r.fatal, "the counter reaches 1000: still not so after 30ms: it is ") || n < 2 {
		t.Fatalf("after %d calls: %q", n, r.fatal)
	}
	if !strings.HasSuffix(r.fatal, fmt.Sprintf("it is %d", n)) {
		t.Errorf("%q does not end with the last error (call %d)", r.fatal, n)
	}
}

func TestWaitReturnsTheLastError(t *testing.T) {
	if err := Wait(20*time.Millisecond, func() error { return ErrNotYet }); !errors.Is(err, ErrNotYet) {
		t.Fatalf("Wait: %v, want ErrNotYet", err)
	}
}

// TestOnlyTestsImportTheKit: no production package depends on the test
// kit; the conformance suite, a library of tests, is the one exception.
// (The packages' tests are not in Deps.)
func TestOnlyTestsImportTheKit(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	cmd := exec.Command(goBin, "list", "-f", `{{.ImportPath}} {{join .Deps " "}}`, "./...")
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const kit = "github.com/tcplab/tcplab/internal/testkit"
	allowed := map[string]bool{kit: true, "github.com/tcplab/tcplab/conformance": true}
	seen := 0
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		seen++
		if allowed[f[0]] {
			continue
		}
		for _, dep := range f[1:] {
			if dep == kit || dep == "github.com/tcplab/tcplab/conformance" {
				t.Errorf("production package %s depends on %s", f[0], dep)
			}
		}
	}
	if seen < 20 {
		t.Fatalf("go list named %d packages:\n%s", seen, out)
	}
}

func TestTryServeReportsAnEarlyExit(t *testing.T) {
	_, err := TryServe(t, fake("fail"), launch.Options{})
	var ee *launch.EarlyExit
	if !errors.As(err, &ee) || ee.LastError != "cannot serve" {
		t.Fatalf("TryServe: %v, want an EarlyExit with the server's error", err)
	}
}

// TestServeStopsTheServerWhenTheTestEnds: a server the test leaves running
// gets SIGTERM at the end of the test, and must exit 0.
func TestServeStopsTheServerWhenTheTestEnds(t *testing.T) {
	var p *launch.Process
	t.Run("server left running", func(t *testing.T) {
		p = Serve(t, fake("ready"))
	})
	select {
	case <-p.Exited():
	default:
		t.Fatal("the server still runs after its test ended")
	}
	if code := p.ExitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0 (SIGTERM)", code)
	}
}

// fakeEnv makes this test binary a fake server instead of the tests.
const fakeEnv = "TESTKIT_TEST_FAKE"

func fake(mode string) *exec.Cmd {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fakeEnv+"="+mode)
	return cmd
}

// fakeServer fails with one line ("fail"), or reports ready and exits 0
// on SIGTERM ("ready").
func fakeServer(mode string) int {
	if mode == "fail" {
		fmt.Fprintln(os.Stderr, "tcplab: cannot serve")
		return 2
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	if err := sdnotify.Send(os.Getenv(sdnotify.Env), sdnotify.Ready, launch.AddrVar+"=127.0.0.1:1"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	<-sigs
	return 0
}
