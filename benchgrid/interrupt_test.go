package benchgrid

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tcplab/tcplab/internal/launch"
	"github.com/tcplab/tcplab/internal/sdnotify"
	"github.com/tcplab/tcplab/internal/testkit"
)

// fakeServeEnv makes this test binary, run as the grid's server, an echo
// server that reports ready as `tcplab serve` does; fakePIDEnv names the
// file it writes its pid to once it has echoed loadedBytes: the load has
// run a little.
const (
	fakeServeEnv = "BENCHGRID_TEST_SERVE"
	fakePIDEnv   = "BENCHGRID_TEST_PIDFILE"
	loadedBytes  = 64 << 10
)

// fakeServe serves echo on 127.0.0.1 until SIGTERM (exit 0) or SIGINT,
// which, like a server whose drain was cut, logs a warning and exits 1.
func fakeServe() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(os.Stderr, "tcplab: %v\n", err)
		os.Exit(1)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	if err := sdnotify.Send(os.Getenv(sdnotify.Env), sdnotify.Ready, launch.AddrVar+"="+ln.Addr().String()); err != nil {
		fmt.Fprintf(os.Stderr, "tcplab: %v\n", err)
		os.Exit(1)
	}
	var echoed atomic.Int64
	var loaded sync.Once
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					c.Write(buf[:n])
					if echoed.Add(int64(n)) >= loadedBytes {
						loaded.Do(func() { os.WriteFile(os.Getenv(fakePIDEnv), []byte(strconv.Itoa(os.Getpid())), 0o644) })
					}
				}
			}()
		}
	}()
	if <-sigs == syscall.SIGINT {
		fmt.Fprintln(os.Stderr, "level=WARN msg=\"warning: drain timeout reached; remaining connections were closed\"")
		os.Exit(1)
	}
	os.Exit(0)
}

// TestInterruptedCellSaysSo interrupts a cell as Ctrl-C does a terminal's
// process group: the grid's context is cancelled and the server gets
// SIGINT, exits 1 and logs a warning. The cell's cause is the
// interruption, not the server's last log line.
func TestInterruptedCellSaysSo(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	o := Options{
		Exe: os.Args[0], Env: []string{fakeServeEnv + "=1", fakePIDEnv + "=" + pidFile},
		Models:    []string{"fake"},
		Workloads: []Workload{{Name: "echo", App: "echo", Clients: []int{2}, Backlogs: []int{8}, Load: loadConfig(10 * time.Second)}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Once the server is up and the load has run a little (the server
		// writes its pid file then), Ctrl-C.
		var pid int
		err := testkit.Wait(testkit.Bound, func() error {
			b, err := os.ReadFile(pidFile)
			if err != nil || len(b) == 0 {
				return testkit.ErrNotYet
			}
			pid, err = strconv.Atoi(string(b))
			return err
		})
		if err != nil {
			t.Errorf("the fake server never wrote its pid file: %v", err)
			return
		}
		syscall.Kill(pid, syscall.SIGINT)
		cancel()
	}()
	res, err := Run(ctx, o)
	if err == nil || res == nil || len(res.Cells) != 1 {
		t.Fatalf("Run = %v, %v; want the interrupted cell and ctx's error", res, err)
	}
	c := res.Cells[0]
	if c.Status != StatusError || !strings.HasPrefix(c.Cause, "interrupted") {
		t.Errorf("cell: %s %q, want an error saying interrupted", c.Status, c.Cause)
	}
	if c.Load != nil && !c.Load.Interrupted {
		t.Errorf("the cell's load result is not marked interrupted")
	}
}
