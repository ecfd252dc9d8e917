package chat_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tcplab/tcplab/app/chat"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/frame"
)

// ioTimeout bounds every read and write; a failure limit, not a target.
const ioTimeout = 20 * time.Second

// lengthClient is a client in length framing over loopback TCP.
type lengthClient struct {
	t    *testing.T
	name string
	c    net.Conn
	r    *bufio.Reader
}

func dialLength(t *testing.T, addr, name string) *lengthClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &lengthClient{t: t, name: name, c: c, r: bufio.NewReader(c)}
}

func (c *lengthClient) send(payload string) {
	c.t.Helper()
	out, err := frame.Append(nil, frame.Length, len(payload), []byte(payload))
	if err != nil {
		c.t.Fatal(err)
	}
	c.c.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := c.c.Write(out); err != nil {
		c.t.Fatalf("%s: write: %v", c.name, err)
	}
}

func (c *lengthClient) next() string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(ioTimeout))
	var hdr [frame.HeaderLen]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		c.t.Fatalf("%s: read: %v", c.name, err)
	}
	p := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(c.r, p); err != nil {
		c.t.Fatalf("%s: read: %v", c.name, err)
	}
	return string(p)
}

// short abbreviates a frame for a failure message.
func short(f string) string {
	if len(f) > 80 {
		return fmt.Sprintf("%.60q... (%d bytes)", f, len(f))
	}
	return fmt.Sprintf("%q", f)
}

// TestDefaultsKeepAReceiverThatKeepsUp runs chat.DefaultOptions() on an
// engine with its default settings (MaxPending 1 MiB): a message as long
// as a client may send is refused to its sender with too-long, and the
// longest message the server does send reaches a receiver that keeps up,
// which stays connected. (With server frames as long as client frames, 1
// MiB, one such message closed every receiver as a slow consumer.)
func TestDefaultsKeepAReceiverThatKeepsUp(t *testing.T) {
	if chat.DefaultMaxServerFrame != engine.DefaultMaxPending/4 {
		t.Errorf("DefaultMaxServerFrame %d, want a quarter of engine.DefaultMaxPending (%d)", chat.DefaultMaxServerFrame, engine.DefaultMaxPending/4)
	}
	h, err := chat.New(chat.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	srv, err := engine.Listen("goroutine", h, engine.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	addr := srv.Addr().String()
	a := dialLength(t, addr, "a")
	hello := a.next()
	nick, ok := strings.CutPrefix(hello, "HELLO tcplab 1 ")
	if !ok {
		t.Fatalf("a: greeting %q", hello)
	}
	b := dialLength(t, addr, "b")
	b.next() // HELLO
	if f := a.next(); !strings.HasPrefix(f, "JOIN lobby ") {
		t.Fatalf("a: %s, want JOIN", short(f))
	}

	prefix := "MSG lobby " + nick + " "
	// The longest frame a client may send (its payload is the text).
	a.send(strings.Repeat("x", chat.DefaultMaxFrame))
	a.send("/ping")
	limit := 0
	for f := a.next(); f != "PONG"; f = a.next() {
		if _, err := fmt.Sscanf(f, "ERR too-long the message would make a %d-byte frame; the limit is %d", new(int), &limit); err != nil {
			t.Fatalf("a: %s", short(f))
		}
	}
	if limit == 0 {
		f := b.next()
		t.Fatalf("a message of %d bytes was sent to the room; its receiver got %s", chat.DefaultMaxFrame, short(f))
	}
	if limit != chat.DefaultMaxServerFrame {
		t.Errorf("server frame limit %d, want DefaultMaxServerFrame %d", limit, chat.DefaultMaxServerFrame)
	}

	text := strings.Repeat("y", limit-len(prefix))
	a.send(text)
	if f := b.next(); f != prefix+text {
		t.Fatalf("b: %s, want the %d-byte MSG", short(f), limit)
	}
	b.send("/ping")
	if f := b.next(); f != "PONG" {
		t.Fatalf("b: %s, want PONG", short(f))
	}
}
