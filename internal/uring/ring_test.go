//go:build linux

package uring

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"go.uber.org/goleak"

	"github.com/tcplab/tcplab/internal/listener"
	"github.com/tcplab/tcplab/internal/testkit/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newRing(t *testing.T) *Ring {
	t.Helper()
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	r, err := New(64, 0, SetupSingleIssuer|SetupDeferTaskrun)
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("skipped: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// waiter submits and reaps, keeping completions that arrive before the
// one being waited for.
type waiter struct {
	r    *Ring
	seen []CQE
}

// wait returns the first completion with userData.
func (w *waiter) wait(t *testing.T, userData uint64) CQE {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i, c := range w.seen {
			if c.UserData == userData {
				w.seen = append(w.seen[:i], w.seen[i+1:]...)
				return c
			}
		}
		if _, err := w.r.Enter(1, -1); err != nil {
			t.Fatal(err)
		}
		w.seen = w.r.Reap(w.seen)
	}
	t.Fatalf("no completion for %d", userData)
	return CQE{}
}

func TestNop(t *testing.T) {
	r := newRing(t)
	w := &waiter{r: r}
	for i := range uint64(200) { // more than the ring holds: exercises wrap-around
		sqe := r.GetSQE()
		if sqe == nil {
			t.Fatal("submission queue full")
		}
		sqe.prepNop(i + 1)
		if c := w.wait(t, i+1); c.Res != 0 {
			t.Fatalf("nop %d: res %d", i, c.Res)
		}
	}
}

func TestFullQueueReturnsNil(t *testing.T) {
	r := newRing(t)
	n := 0
	for r.GetSQE() != nil {
		n++
	}
	if n != 64 {
		t.Fatalf("%d SQEs before full, want 64", n)
	}
}

// TestAcceptRecvSend serves one echo over real loopback TCP with multishot
// accept, a provided-buffer receive and a send.
func TestAcceptRecvSend(t *testing.T) {
	r := newRing(t)
	w := &waiter{r: r}
	lfd, addr, err := listener.FD("127.0.0.1:0", listener.Options{Backlog: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lfd)
	br, err := r.RegisterBufRing(8, 4096, testGroup)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Free()

	r.GetSQE().PrepAccept(lfd, true, 1)
	clients := make([]net.Conn, 2)
	for i := range clients {
		if clients[i], err = net.Dial("tcp", addr.String()); err != nil {
			t.Fatal(err)
		}
		defer clients[i].Close()
		clients[i].SetDeadline(time.Now().Add(10 * time.Second))
	}
	var fds []int
	for range clients {
		c := w.wait(t, 1)
		if c.Res < 0 {
			t.Fatalf("accept: %v", unix.Errno(-c.Res))
		}
		if !c.More() {
			t.Fatal("multishot accept disarmed after one connection")
		}
		fds = append(fds, int(c.Res))
	}
	for _, fd := range fds {
		defer unix.Close(fd)
	}
	// Order the accepted sockets like the clients.
	if peer, err := unix.Getpeername(fds[0]); err != nil {
		t.Fatal(err)
	} else if listener.SockaddrToTCP(peer).Port != clients[0].LocalAddr().(*net.TCPAddr).Port {
		fds[0], fds[1] = fds[1], fds[0]
	}

	if _, err := clients[0].Write([]byte("hello ring")); err != nil {
		t.Fatal(err)
	}
	r.GetSQE().PrepRecvSelect(fds[0], testGroup, false, 2)
	c := w.wait(t, 2)
	id, ok := c.BufferID()
	if c.Res <= 0 || !ok {
		t.Fatalf("recv: res %d, buffer %v", c.Res, ok)
	}
	got := br.Bytes(id, int(c.Res))
	if string(got) != "hello ring" {
		t.Fatalf("received %q", got)
	}
	r.GetSQE().PrepSend(fds[0], unsafe.Pointer(&got[0]), len(got), 3)
	if c := w.wait(t, 3); int(c.Res) != len(got) {
		t.Fatalf("send: res %d", c.Res)
	}
	br.RecycleLater(id)
	br.Publish()
	echo := make([]byte, len("hello ring"))
	if _, err := io.ReadFull(clients[0], echo); err != nil || string(echo) != "hello ring" {
		t.Fatalf("client got %q, %v", echo, err)
	}

	// Use every buffer more than once: recycling must publish them again.
	for i := range 20 {
		msg := []byte{byte('a' + i)}
		clients[1].Write(msg)
		r.GetSQE().PrepRecvSelect(fds[1], testGroup, false, 4)
		c := w.wait(t, 4)
		id, ok := c.BufferID()
		if c.Res != 1 || !ok || br.Bytes(id, 1)[0] != msg[0] {
			t.Fatalf("recv %d: res %d ok %v", i, c.Res, ok)
		}
		br.RecycleLater(id)
		br.Publish()
	}

	r.GetSQE().PrepClose(fds[1], 5)
	if c := w.wait(t, 5); c.Res != 0 {
		t.Fatalf("close: %d", c.Res)
	}
	if n, err := clients[1].Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after close: (%d, %v), want EOF", n, err)
	}
}

// TestCreateHereDriveThere creates a disabled single-issuer ring and its
// buffer ring on one thread and drives it from another, locked, thread, as
// a server does (it creates rings where it can report errors, and runs
// each on its loop's thread).
func TestCreateHereDriveThere(t *testing.T) {
	r, err := New(8, 64, SetupSingleIssuer|SetupDeferTaskrun|SetupRDisabled)
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("skipped: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.cqEntries != 64 {
		t.Fatalf("CQ entries %d, want 64", r.cqEntries)
	}
	br, err := r.RegisterBufRing(4, 64, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Free()
	done := make(chan error)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := r.Enable(); err != nil {
			done <- err
			return
		}
		r.GetSQE().prepNop(9)
		if _, err := r.Enter(1, time.Second); err != nil {
			done <- err
			return
		}
		var got []uint64
		for _, c := range r.Reap(nil) {
			got = append(got, c.UserData)
		}
		if len(got) != 1 || got[0] != 9 {
			done <- fmt.Errorf("completions %v, want [9]", got)
			return
		}
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestEnterTimesOut waits on an idle ring with a timeout: Enter returns
// after about that long, with no error and no completion.
func TestEnterTimesOut(t *testing.T) {
	r := newRing(t)
	start := time.Now()
	if _, err := r.Enter(1, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 15*time.Millisecond {
		t.Fatalf("returned after %v, before the 20ms timeout", waited)
	}
	if n := len(r.Reap(nil)); n != 0 {
		t.Fatalf("%d completions from an idle ring", n)
	}
}

// TestEnterRetriesEINTR interrupts a thread waiting in io_uring_enter with
// signals (SIGURG, which the Go runtime uses for preemption): the kernel
// returns EINTR, and Enter must retry and return only when the completion
// it waits for arrives.
func TestEnterRetriesEINTR(t *testing.T) {
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	arena, err := NewArena(1, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer arena.Free()
	type result struct {
		err  error
		cqes int
	}
	tids, done := make(chan int, 1), make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		r, err := New(8, 0, 0)
		if err != nil {
			tids <- -1
			done <- result{err: err}
			return
		}
		defer r.Close()
		r.GetSQE().PrepRead(efd, unsafe.Pointer(&arena.Slot(0)[0]), 8, 1)
		// Submit first: an enter that submits something returns that
		// count, not EINTR, when a signal cuts its wait short.
		if _, err := r.Enter(0, 0); err != nil {
			tids <- -1
			done <- result{err: err}
			return
		}
		tids <- unix.Gettid()
		_, err = r.Enter(1, -1)
		done <- result{err: err, cqes: len(r.Reap(nil))}
	}()
	tid := <-tids
	if tid < 0 {
		res := <-done
		if errors.Is(res.err, ErrUnavailable) {
			t.Skipf("skipped: %v", res.err)
		}
		t.Fatal(res.err)
	}
	for range 5 {
		waitInEnter(t, tid) // so the signal cuts a wait short
		if err := unix.Tgkill(unix.Getpid(), tid, unix.SIGURG); err != nil {
			t.Fatal(err)
		}
	}
	waitInEnter(t, tid) // waiting again: retried
	select {
	case res := <-done:
		t.Fatalf("Enter returned on a signal (%+v) before its completion", res)
	default:
	}
	unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	select {
	case res := <-done:
		if res.err != nil || res.cqes != 1 {
			t.Fatalf("Enter: %+v; want no error and the completion", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Enter did not return after the eventfd was written")
	}
}

// waitInEnter waits until thread tid of this process is in the
// io_uring_enter system call, as /proc/self/task/TID/syscall says.
func waitInEnter(t *testing.T, tid int) {
	t.Helper()
	want := strconv.Itoa(unix.SYS_IO_URING_ENTER) + " "
	wait.Eventually(t, wait.Bound, fmt.Sprintf("thread %d is in io_uring_enter", tid), func() error {
		b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/syscall", tid))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), want) {
			return fmt.Errorf("/proc says %q", b)
		}
		return nil
	})
}

// prepNop fills sqe with a no-op.
func (sqe *SQE) prepNop(userData uint64) {
	sqe.opcode = opNop
	sqe.userData = userData
}

// testGroup is the buffer group TestAcceptRecvSend registers.
const testGroup = 7

// TestArena hands out every slot once, last freed first, and says when
// none is left.
func TestArena(t *testing.T) {
	a, err := NewArena(3, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Free()
	seen := map[int]bool{}
	for range 3 {
		i, ok := a.Get()
		if !ok || seen[i] || len(a.Slot(i)) != 64 {
			t.Fatalf("Get = %d, %v (seen %v)", i, ok, seen)
		}
		seen[i] = true
		a.Slot(i)[63] = byte(i) // writable to its end
	}
	if _, ok := a.Get(); ok || a.Available() != 0 {
		t.Fatal("a fourth slot from a 3-slot arena")
	}
	a.Put(1)
	if i, ok := a.Get(); !ok || i != 1 {
		t.Fatalf("Get after Put(1) = %d, %v; want slot 1 again", i, ok)
	}
	if _, err := NewArena(0, 64); err == nil {
		t.Fatal("an empty arena was accepted")
	}
}
