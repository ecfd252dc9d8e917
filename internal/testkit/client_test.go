package testkit

import (
	"strings"
	"testing"

	"github.com/tcplab/tcplab/app/chat"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/frame"
)

// chatServer serves a chat in framing kind on 127.0.0.1 until the test
// ends, and returns its address.
func chatServer(t *testing.T, kind frame.Kind) string {
	t.Helper()
	h, err := chat.New(chat.Options{Framing: kind})
	if err != nil {
		t.Fatal(err)
	}
	return Listen(t, "goroutine", h, engine.Config{}).Addr().String()
}

func TestClientSpeaksTheChatInBothFramings(t *testing.T) {
	for _, kind := range []frame.Kind{frame.Length, frame.Line} {
		t.Run(string(kind), func(t *testing.T) {
			addr := chatServer(t, kind)
			a := Join(t, addr, kind, "alice", "dev")
			b, err := Dialer{}.Hello(t, addr, kind)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(b.Name, "guest-") {
				t.Fatalf("Hello named the client %q, want its guest nick", b.Name)
			}
			b.Call("/join dev", "OK join dev")
			a.Skip = Presence
			a.Next("JOIN dev " + b.Name) // a frame waited for is never skipped
			a.Skip = nil
			a.MustSend("hi", "/who")
			b.Next("MSG dev alice hi")
			a.Next("OK who alice " + b.Name)
			a.Quiet()
			b.Quiet()
			if got := a.Sync(); len(got) != 0 {
				t.Fatalf("Sync: %q, want nothing before PONG", got)
			}
			b.Call("/join elsewhere", "OK join elsewhere")
			a.Skip = Presence
			a.Quiet() // b's LEAVE, on its way, is dropped
			b.MustSend("/quit")
			b.End("BYE quit")
			var frames []string
			a.MustSend("one", "two", "/ping")
			a.Skip = nil
			if err := a.ReadUntil("PONG", func(f string) error { frames = append(frames, f); return nil }); err != nil || len(frames) != 0 {
				t.Fatalf("ReadUntil: %q, %v; want nothing before PONG (a sender gets no echo)", frames, err)
			}
		})
	}
}

func TestHelloRefusesAServerThatIsNotAChat(t *testing.T) {
	addr := chatServer(t, frame.Line)
	// A length-framed client reads the line greeting as a huge length.
	if _, err := (Dialer{Stall: true}).Hello(t, addr, frame.Length); err == nil {
		t.Fatal("Hello accepted a greeting in the other framing")
	}
}
