package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// openPTY returns a pseudo-terminal's master and slave ends.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	if err := unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 100}); err != nil {
		m.Close()
		s.Close()
		t.Fatal(err)
	}
	return m, s
}

// TestLoadShowsProgressOnATerminal runs load with a terminal as stderr and
// expects the live bar there, while stdout keeps the summary.
func TestLoadShowsProgressOnATerminal(t *testing.T) {
	addr := serve(t, "--addr", "127.0.0.1:0").Addr
	master, slave := openPTY(t)
	defer master.Close()
	if !isTerminal(slave) || isTerminal(io.Discard) {
		t.Fatal("isTerminal cannot tell a terminal")
	}
	var screen bytes.Buffer
	read := make(chan struct{})
	go func() {
		io.Copy(&screen, master) // ends with EIO once the slave closes
		close(read)
	}()
	var out bytes.Buffer
	code := run(context.Background(), []string{"load", "--addr", addr, "--conns", "2", "--duration", "600ms"}, &out, slave)
	slave.Close()
	<-read
	if code != 0 {
		t.Fatalf("exit %d: %s", code, screen.String())
	}
	if s := screen.String(); !strings.Contains(s, "load ") || !strings.Contains(s, "%") || !strings.Contains(s, "ok 2") {
		t.Errorf("no live progress on the terminal: %q", s)
	}
	if !strings.Contains(out.String(), "connections  ok 2") {
		t.Errorf("summary %q", out.String())
	}
}

// TestBarStaysWhereInterrupted: a bar finished after an interruption
// stays at the work done (1 of 4); one that completed shows 100%.
func TestBarStaysWhereInterrupted(t *testing.T) {
	for _, completed := range []bool{false, true} {
		master, slave := openPTY(t)
		var screen bytes.Buffer
		read := make(chan struct{})
		go func() {
			io.Copy(&screen, master) // ends with EIO once the slave closes
			close(read)
		}()
		bar := newLiveBar(slave, "bench", 4)
		bar.update(1, "cell 2")
		bar.finish(completed)
		slave.Close()
		<-read
		master.Close()
		s := screen.String()
		if got := strings.Contains(s, "100 %"); got != completed {
			t.Errorf("completed %v: the bar shows 100%%: %v (%q)", completed, got, s)
		}
		if !completed && !strings.Contains(s, "25 %") {
			t.Errorf("interrupted: the bar does not stay at 25%%: %q", s)
		}
	}
}
