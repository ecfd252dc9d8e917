package listener

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// backlogOf reads a listening socket's accept-queue limit from the kernel:
// for a socket in LISTEN, TCP_INFO's sacked field is sk_max_ack_backlog
// (what ss shows as Send-Q).
func backlogOf(t *testing.T, ln *net.TCPListener) int {
	t.Helper()
	raw, err := ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	var gerr error
	raw.Control(func(fd uintptr) { info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
	if gerr != nil {
		t.Fatal(gerr)
	}
	return int(info.Sacked)
}

func TestBacklogIsTheOneAskedFor(t *testing.T) {
	ln, err := Listen("127.0.0.1:0", Options{Backlog: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if got := backlogOf(t, ln); got != 7 {
		t.Fatalf("kernel backlog %d, want 7", got)
	}
	raw, _ := ln.SyscallConn()
	var reuse int
	raw.Control(func(fd uintptr) { reuse, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR) })
	if reuse == 0 {
		t.Fatal("SO_REUSEADDR not set")
	}
}

func TestBacklogOverSomaxconnWarns(t *testing.T) {
	limit := Somaxconn()
	if limit == 0 {
		t.Skip("cannot read " + SomaxconnPath)
	}
	var logs bytes.Buffer
	ln, err := Listen("127.0.0.1:0", Options{Backlog: limit + 1000, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "somaxconn") {
		t.Fatalf("no warning logged: %q", logs.String())
	}
	if got := backlogOf(t, ln); got != limit {
		t.Fatalf("kernel backlog %d, want it capped at somaxconn %d", got, limit)
	}
}

func TestListenNSharesOnePort(t *testing.T) {
	lns, err := ListenN("127.0.0.1:0", 3, Options{Backlog: 16})
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan int, 64)
	for i, ln := range lns {
		defer ln.Close()
		if ln.Addr().String() != lns[0].Addr().String() {
			t.Fatalf("listener %d on %s, first on %s", i, ln.Addr(), lns[0].Addr())
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
				accepted <- i
			}
		}()
	}
	// The kernel hashes connections over the group by source port; with
	// 60 connections every listener gets some with near certainty.
	seen := map[int]bool{}
	for range 60 {
		c, err := net.Dial("tcp", lns[0].Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		select {
		case i := <-accepted:
			seen[i] = true
		case <-time.After(5 * time.Second):
			t.Fatal("connection not accepted")
		}
	}
	if len(seen) != 3 {
		t.Fatalf("connections reached listeners %v, want all 3", seen)
	}
}

// TestListenNRefusesABusyPort checks that a group of SO_REUSEPORT
// listeners does not join sockets already listening on its port (another
// server of the same user, with or without SO_REUSEPORT), and that the
// address is free again once the first group closes.
func TestListenNRefusesABusyPort(t *testing.T) {
	first, err := ListenN("127.0.0.1:0", 2, Options{Backlog: 16})
	if err != nil {
		t.Fatal(err)
	}
	addr := first[0].Addr().String()
	if again, err := ListenN(addr, 2, Options{Backlog: 16}); !errors.Is(err, unix.EADDRINUSE) {
		for _, ln := range again {
			ln.Close()
		}
		t.Fatalf("a second group on %s: %v, want address in use", addr, err)
	}
	for _, ln := range first {
		ln.Close()
	}
	plain, err := Listen(addr, Options{Backlog: 16})
	if err != nil {
		t.Fatalf("%s after the first group closed: %v", addr, err)
	}
	defer plain.Close()
	if _, err := ListenN(addr, 2, Options{Backlog: 16}); !errors.Is(err, unix.EADDRINUSE) {
		t.Fatalf("a group on %s held by a plain listener: %v, want address in use", addr, err)
	}
}

func TestBadInput(t *testing.T) {
	if _, err := Listen("127.0.0.1:0", Options{Backlog: 0}); err == nil {
		t.Error("backlog 0 accepted")
	}
	if _, err := Listen("nonsense", Options{Backlog: 1}); err == nil {
		t.Error("bad address accepted")
	}
	ln, err := Listen("127.0.0.1:0", Options{Backlog: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := Listen(ln.Addr().String(), Options{Backlog: 1}); err == nil || !strings.Contains(err.Error(), "bind") {
		t.Errorf("second bind of a busy port: %v", err)
	}
	if _, err := ListenN("127.0.0.1:0", 0, Options{Backlog: 1}); err == nil {
		t.Error("0 listeners accepted")
	}
}
