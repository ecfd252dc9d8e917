package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tcplab/tcplab/internal/uring/uringtest"
)

// denyIOUringIfAsked installs the seccomp filter that makes the kernel
// refuse io_uring, in a child process started for that.
func denyIOUringIfAsked() {
	if os.Getenv(uringtest.Environment) == "" {
		return
	}
	if err := uringtest.DenyIOUring(); err != nil {
		fmt.Fprintln(os.Stderr, "test setup:", err)
		os.Exit(3)
	}
}

// TestServeUringRefusedByTheKernel runs `tcplab serve --model uring` in a
// process where the kernel refuses io_uring (a seccomp filter, as in many
// containers): it must exit with status 1 and a single line naming the
// cause, not start, hang or fall back.
func TestServeUringRefusedByTheKernel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "serve", "--model", "uring", "--app", "echo", "--addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "TCPLAB_TEST_MAIN=1", uringtest.Environment+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit: %v, want status 1; stderr %q", err, stderr.String())
	}
	got := stderr.String()
	want := "tcplab: model uring: model not supported here: io_uring unavailable: io_uring_setup: io_uring is not permitted"
	if !strings.HasPrefix(got, want) || strings.Count(got, "\n") != 1 || !strings.Contains(got, "seccomp") {
		t.Fatalf("stderr %q: want one line starting %q and naming the seccomp filter", got, want)
	}
	if stdout.Len() != 0 {
		t.Fatalf("stdout %q, want nothing", stdout.String())
	}
}
