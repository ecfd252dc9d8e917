package sdnotify

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any leaves a goroutine running.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// bound is a failure limit for a datagram on this machine's loopback.
const bound = 10 * time.Second

func TestSendReachesReceiver(t *testing.T) {
	r, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !strings.HasPrefix(r.Socket(), "/") {
		t.Fatalf("Socket() = %q, want an absolute path", r.Socket())
	}
	if err := Send(r.Socket(), Ready, "STATUS=serving on 127.0.0.1:7000", "X_TCPLAB_ADDR=127.0.0.1:7000"); err != nil {
		t.Fatal(err)
	}
	got, err := r.Next(time.Now().Add(bound))
	if err != nil {
		t.Fatal(err)
	}
	want := State{"READY": "1", "STATUS": "serving on 127.0.0.1:7000", "X_TCPLAB_ADDR": "127.0.0.1:7000"}
	if !maps.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if err := Send(r.Socket(), Stopping); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Next(time.Now().Add(bound)); err != nil || got["STOPPING"] != "1" {
		t.Fatalf("second datagram: %v, %v; want STOPPING=1", got, err)
	}
}

// TestSendToAbstractSocket: "@name" is a socket in the abstract namespace,
// as systemd hands out.
func TestSendToAbstractSocket(t *testing.T) {
	name := fmt.Sprintf("@tcplab-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := &Receiver{c: c}
	if err := Send(name, Ready); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Next(time.Now().Add(bound)); err != nil || got["READY"] != "1" {
		t.Fatalf("got %v, %v; want READY=1", got, err)
	}
}

func TestSendWithoutSocketIsANoOp(t *testing.T) {
	if err := Send("", Ready); err != nil {
		t.Fatalf("Send without NOTIFY_SOCKET: %v", err)
	}
}

func TestSendRefusesBadInput(t *testing.T) {
	r, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, tc := range []struct {
		socket string
		state  []string
	}{
		{"vsock:2:1234", []string{Ready}},
		{"relative/path", []string{Ready}},
		{r.Socket(), []string{"READY"}},
		{r.Socket(), []string{"=1"}},
		{r.Socket(), []string{"STATUS=two\nlines"}},
		{r.Socket(), []string{"STATUS=" + strings.Repeat("x", maxDatagram)}},
		{r.Socket() + ".missing", []string{Ready}},
	} {
		err := Send(tc.socket, tc.state...)
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("Send(%q, %q): %v, want a one-line error", tc.socket, tc.state, err)
		}
	}
}

func TestNextEndsAtDeadlineAndClose(t *testing.T) {
	r, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(time.Now().Add(10 * time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Next past its deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	dir := r.dir
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(time.Time{}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Next after Close: %v, want net.ErrClosed", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Close left the socket's directory %s: %v", dir, err)
	}
}

// FuzzParse: every line Send would send comes back from Parse; no input
// panics.
func FuzzParse(f *testing.F) {
	f.Add([]byte("READY=1\nSTATUS=serving\n"))
	f.Add([]byte("no equals\n=empty key\nA=b=c"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st := Parse(b)
		for k := range st {
			if k == "" || strings.ContainsAny(k, "=\n") {
				t.Fatalf("key %q from %q", k, b)
			}
		}
		if k, v, ok := strings.Cut(string(b), "="); ok && k != "" && !strings.Contains(k, "\n") && !strings.Contains(v, "\n") {
			if got := Parse([]byte(string(b) + "\n")); got[k] != v {
				t.Fatalf("Parse(%q)[%q] = %q, want %q", b, k, got[k], v)
			}
		}
	})
}
