package launch

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tcplab/tcplab/internal/sdnotify"
)

// fakeEnv makes this test binary a fake server (fakeServer) instead of
// the tests; legacyAddrEnv is where a legacy one listens.
const (
	fakeEnv       = "LAUNCH_TEST_FAKE"
	legacyAddrEnv = "LAUNCH_TEST_ADDR"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeEnv); mode != "" {
		os.Exit(fakeServer(mode))
	}
	goleak.VerifyTestMain(m)
}

// fakeServer behaves as mode says:
//
//	ready   listen, notify READY=1 with the address, serve one byte back per
//	        connection until SIGTERM, notify STOPPING=1, exit 0
//	fail    print tcplab's one-line error and exit 2 without notifying
//	silent  never notify; exit on SIGTERM
//	stubborn  as ready, but ignore SIGTERM
//	legacy  as ready, on the address in legacyAddrEnv, without notifying
func fakeServer(mode string) int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	if mode == "stubborn" {
		signal.Ignore(syscall.SIGTERM)
	}
	switch mode {
	case "fail":
		fmt.Fprintln(os.Stderr, "some log line")
		fmt.Fprintln(os.Stderr, "tcplab: --addr: boom")
		return 2
	case "silent":
		<-sigs
		return 0
	}
	addr := "127.0.0.1:0"
	if mode == "legacy" {
		addr = os.Getenv(legacyAddrEnv)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte{'!'})
			c.Close()
		}
	}()
	socket := os.Getenv(sdnotify.Env)
	if mode == "legacy" {
		socket = "" // speaks no notification protocol
	}
	if err := sdnotify.Send(socket, sdnotify.Ready, AddrVar+"="+ln.Addr().String()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if mode == "stubborn" {
		select {}
	}
	<-sigs
	sdnotify.Send(socket, sdnotify.Stopping)
	return 0
}

func fake(mode string) *exec.Cmd {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fakeEnv+"="+mode)
	return cmd
}

func TestStartWaitsForReadyAndStopStops(t *testing.T) {
	p, err := Start(fake("ready"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		p.Kill()
		t.Fatal(err)
	}
	b := make([]byte, 1)
	c.SetDeadline(time.Now().Add(DefaultReadyTimeout))
	if _, err := c.Read(b); err != nil || b[0] != '!' {
		t.Errorf("read from the server at %s: %q, %v", p.Addr, b, err)
	}
	c.Close()
	if err := p.Stop(DefaultReadyTimeout); err != nil {
		t.Fatal(err)
	}
	if code := p.ExitCode(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if !p.Notified("STOPPING", "1") {
		t.Error("STOPPING=1, sent before exit, was not seen once Stop returned")
	}
}

func TestStartReportsTheLastErrorOfAServerThatExits(t *testing.T) {
	_, err := Start(fake("fail"), Options{})
	var ee *EarlyExit
	if !errors.As(err, &ee) || ee.LastError != "--addr: boom" || !strings.Contains(ee.Stderr, "some log line") {
		t.Fatalf("Start: %v, want an EarlyExit with the server's last line, less its tcplab: prefix, and its stderr", err)
	}
	if !strings.HasSuffix(err.Error(), "(exit status 2): --addr: boom") {
		t.Errorf("error %q does not end with the exit status and the server's line", err)
	}
}

func TestStartGivesUpOnASilentServer(t *testing.T) {
	_, err := Start(fake("silent"), Options{ReadyTimeout: 100 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "did not report ready") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Start: %v, want a one-line timeout", err)
	}
}

// TestStacksOnTimeoutShowWhereTheServerWaits: with StacksOnTimeout a
// silent Go server gets SIGQUIT, and the error carries the goroutine
// stacks it printed, its wait for SIGTERM (fakeServer) among them.
func TestStacksOnTimeoutShowWhereTheServerWaits(t *testing.T) {
	_, err := Start(fake("silent"), Options{ReadyTimeout: 100 * time.Millisecond, StacksOnTimeout: true})
	if err == nil || !strings.Contains(err.Error(), "did not report ready") || !strings.Contains(err.Error(), "goroutine ") ||
		!strings.Contains(err.Error(), "fakeServer") {
		t.Fatalf("Start: %v, want a timeout with the server's stacks", err)
	}
}

func TestStopKillsAServerThatIgnoresSIGTERM(t *testing.T) {
	p, err := Start(fake("stubborn"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(100 * time.Millisecond); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Stop: %v, want it killed", err)
	}
	if code := p.ExitCode(); code != -1 {
		t.Errorf("exit code %d, want -1 (killed by a signal)", code)
	}
}

func TestStartCopiesStderr(t *testing.T) {
	var b strings.Builder
	cmd := fake("fail")
	cmd.Stderr = &b
	if _, err := Start(cmd, Options{}); err == nil {
		t.Fatal("the failing fake started")
	}
	if !strings.Contains(b.String(), "some log line") {
		t.Fatalf("cmd.Stderr got %q", b.String())
	}
}

// TestDialAddrIsReadyWhenItAccepts: a server that speaks no notification
// protocol is ready once the address it was given accepts a connection.
func TestDialAddrIsReadyWhenItAccepts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := fake("legacy")
	cmd.Env = append(cmd.Env, legacyAddrEnv+"="+addr)
	p, err := Start(cmd, Options{DialAddr: addr})
	if err != nil {
		t.Fatal(err)
	}
	if p.Addr != addr {
		t.Errorf("Addr %q, want %q", p.Addr, addr)
	}
	if err := p.Stop(DefaultReadyTimeout); err != nil {
		t.Fatal(err)
	}
}
