package load

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tcplab/tcplab/app/chat"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/internal/testkit"
)

// chatServer serves a chat handler of framing kind on a loopback port
// until the test ends.
func chatServer(t *testing.T, kind frame.Kind) string {
	t.Helper()
	h, err := chat.New(chat.Options{Framing: kind})
	if err != nil {
		t.Fatal(err)
	}
	return testkit.Listen(t, "goroutine", h, engine.Config{}).Addr().String()
}

// TestChatRunNamesTheServersFraming: a chat run in the other framing than
// the server's fails every connection at once with the framing to use,
// rather than wait out the connect timeout for a newline a length server
// never sends.
func TestChatRunNamesTheServersFraming(t *testing.T) {
	for _, c := range []struct{ server, client frame.Kind }{{frame.Length, frame.Line}, {frame.Line, frame.Length}} {
		addr := chatServer(t, c.server)
		res := mustRun(t, Config{App: AppChat, Framing: c.client, Addr: addr, Conns: 3, Duration: 100 * time.Millisecond, ConnectTimeout: 20 * time.Second})
		want := "the server speaks " + string(c.server) + " framing: try --framing " + string(c.server)
		if res.OKConns != 0 || res.Failures[ReasonProtocol] != 3 || !strings.Contains(res.FirstError, want) {
			t.Errorf("%s against %s: ok %d, failures %v, first error %q; want 3 protocol errors saying %q",
				c.client, c.server, res.OKConns, res.Failures, res.FirstError, want)
		}
		if res.Elapsed > 10 {
			t.Errorf("%s against %s: the run took %.1fs: it waited for the connect timeout", c.client, c.server, res.Elapsed)
		}
	}
}

func TestParseServerFrame(t *testing.T) {
	for in, want := range map[string]serverFrame{
		"HELLO tcplab 1 guest-7":        {"HELLO", "tcplab", "1", "guest-7"},
		"MSG lobby alice hi there, all": {"MSG", "lobby", "alice", "hi there, all"},
		"ERR rate-limited slow down":    {"ERR", "rate-limited", "slow", "down"},
		"BYE slow-consumer":             {"BYE", "slow-consumer", "", ""},
		"":                              {},
	} {
		if got := parseServerFrame([]byte(in)); got != want {
			t.Errorf("%q: %+v, want %+v", in, got, want)
		}
	}
}

func TestStampRoundTrip(t *testing.T) {
	for _, size := range []int{1, 20, 64, 1000} {
		text := appendStamp(nil, 1500*time.Microsecond, 1600*time.Microsecond, size)
		if len(text) < size {
			t.Errorf("size %d: text of %d bytes", size, len(text))
		}
		due, sent, ok := parseStamp(string(text))
		if !ok || due != 1500*time.Microsecond || sent != 1600*time.Microsecond {
			t.Errorf("size %d: %q parsed as %v %v %v", size, text, due, sent, ok)
		}
	}
	for _, bad := range []string{"", "lt", "lt 1", "lt 1 2", "lt x 2 ", "lt -1 2 ", "hello 1 2 ", "lt 1 99999999999999999999 "} {
		if _, _, ok := parseStamp(bad); ok {
			t.Errorf("parseStamp(%q) succeeded", bad)
		}
	}
}

func FuzzParseStamp(f *testing.F) {
	f.Add("lt 1 2 xxx")
	f.Add("lt 12345 67890 ")
	f.Fuzz(func(t *testing.T, s string) {
		due, sent, ok := parseStamp(s)
		if !ok {
			return
		}
		again, sent2, ok := parseStamp(string(appendStamp(nil, due, sent, 0)))
		if !ok || again != due || sent2 != sent {
			t.Fatalf("%q: %v %v did not survive a round trip", s, due, sent)
		}
	})
}

func FuzzParseServerFrame(f *testing.F) {
	f.Add([]byte("MSG lobby alice lt 1 2 x"))
	f.Add([]byte("HELLO tcplab 1 guest-1"))
	f.Fuzz(func(t *testing.T, p []byte) {
		fr := parseServerFrame(p)
		// The four parts and the (at most three) spaces between them are
		// the whole frame.
		spaces := min(bytes.Count(p, []byte(" ")), 3)
		if len(fr.verb)+len(fr.a)+len(fr.b)+len(fr.rest)+spaces != len(p) || bytes.Contains([]byte(fr.verb+fr.a+fr.b), []byte(" ")) {
			t.Fatalf("%q split into %+v", p, fr)
		}
	})
}

// TestSummaryShowsServerErrors: the ERR codes a chat run received are in
// the summary, not only in the JSON.
func TestSummaryShowsServerErrors(t *testing.T) {
	res := &Result{App: AppChat, Mode: "chat", Conns: 2, Senders: 1, ServerErrors: map[string]int{"rate-limited": 7, "bad-command": 1}}
	if s := res.Summary(); !strings.Contains(s, "\nserver ERR   bad-command 1, rate-limited 7\n") {
		t.Errorf("summary lacks the ERR codes:\n%s", s)
	}
	res.ServerErrors = nil
	if s := res.Summary(); strings.Contains(s, "server ERR") {
		t.Errorf("summary shows ERR codes where there were none:\n%s", s)
	}
}
