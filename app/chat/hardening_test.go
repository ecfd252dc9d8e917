package chat

import (
	"testing"

	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/handler"
)

// frames decodes b as line frames.
func frames(t *testing.T, b []byte) []string {
	t.Helper()
	d, err := frame.NewDecoder(frame.Line, MinServerFrame)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for len(b) > 0 {
		p, n, err := d.Decode(b)
		if err != nil || n == 0 {
			t.Fatalf("undecodable %q: %v", b, err)
		}
		out = append(out, string(p))
		b = b[n:]
	}
	return out
}

// TestRefusalsAndFarewells checks what the chat says for the engine's
// per-address refusals and its frame timeout (the conformance suite checks
// them over TCP with the probe handler and, for the frame timeout, chat).
func TestRefusalsAndFarewells(t *testing.T) {
	h, err := New(Options{Framing: frame.Line})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for reason, want := range map[error][]string{
		handler.ErrTooManyConns: {"ERR too-many-connections your address has the most connections the server allows open", "BYE too-many-connections"},
		handler.ErrConnRate:     {"ERR connecting-too-fast your address opens connections faster than the server allows", "BYE connecting-too-fast"},
		handler.ErrServerFull:   {"ERR server-full the server is at its connection limit", "BYE server-full"},
	} {
		got := frames(t, h.Refuse(reason))
		if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
			t.Errorf("Refuse(%v) = %q, want %q", reason, got, want)
		}
	}
	var c memConn
	s := h.Open(&c)
	defer s.Closed(nil)
	if got := frames(t, s.(handler.Farewell).Farewell(handler.ErrFrameTimeout)); len(got) != 1 || got[0] != "BYE frame-timeout" {
		t.Errorf("farewell for a frame timeout: %q", got)
	}
}

// TestCounts checks the protocol counters the metrics read.
func TestCounts(t *testing.T) {
	h, err := New(Options{Framing: frame.Line, MsgRate: 0.001, MsgBurst: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var a, b memConn
	sa, sb := h.Open(&a), h.Open(&b) // HELLO each, JOIN to a
	sa.Data([]byte("one\ntwo\nthree\n"))
	sa.Closed(nil) // LEAVE to b
	sb.Closed(nil)
	want := handler.Counts{FramesIn: 3, FramesOut: 2 + 1 + 2 + 1 + 1, RateLimited: 1} // + MSG x2, ERR, LEAVE
	if got := h.Counts(); got != want {
		t.Fatalf("counts %+v, want %+v", got, want)
	}
}
