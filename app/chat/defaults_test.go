package chat_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tcplab/tcplab/app/chat"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/internal/testkit"
)

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
	addr := testkit.Listen(t, "goroutine", h, engine.Config{}).Addr().String()
	a := testkit.Dial(t, addr, frame.Length)
	hello := a.MustRead()
	nick, ok := strings.CutPrefix(hello, "HELLO tcplab 1 ")
	if !ok {
		t.Fatalf("a: greeting %q", hello)
	}
	b := testkit.Dial(t, addr, frame.Length)
	b.MustRead() // HELLO
	if f := a.MustRead(); !strings.HasPrefix(f, "JOIN lobby ") {
		t.Fatalf("a: %s, want JOIN", testkit.Cut(f))
	}

	prefix := "MSG lobby " + nick + " "
	// The longest frame a client may send (its payload is the text).
	a.MustSend(strings.Repeat("x", chat.DefaultMaxFrame))
	a.MustSend("/ping")
	limit := 0
	for f := a.MustRead(); f != "PONG"; f = a.MustRead() {
		if _, err := fmt.Sscanf(f, "ERR too-long the message would make a %d-byte frame; the limit is %d", new(int), &limit); err != nil {
			t.Fatalf("a: %s", testkit.Cut(f))
		}
	}
	if limit == 0 {
		f := b.MustRead()
		t.Fatalf("a message of %d bytes was sent to the room; its receiver got %s", chat.DefaultMaxFrame, testkit.Cut(f))
	}
	if limit != chat.DefaultMaxServerFrame {
		t.Errorf("server frame limit %d, want DefaultMaxServerFrame %d", limit, chat.DefaultMaxServerFrame)
	}

	text := strings.Repeat("y", limit-len(prefix))
	a.MustSend(text)
	if f := b.MustRead(); f != prefix+text {
		t.Fatalf("b: %s, want the %d-byte MSG", testkit.Cut(f), limit)
	}
	b.MustSend("/ping")
	if f := b.MustRead(); f != "PONG" {
		t.Fatalf("b: %s, want PONG", testkit.Cut(f))
	}
}
