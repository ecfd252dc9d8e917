package conformance

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/handler"
)

// seamLimit is the MaxPending and MaxInbound the seam cases run with, small
// so that limits are reached quickly.
const seamLimit = 64 << 10

// SeamCases check the handler seam's promises through the Probe handler:
// concurrent writes stay whole and ordered, bounds close the connection
// with a clear reason, a failing session's writes are flushed, and reading
// pauses instead of overflowing when the peer reads slowly.
func SeamCases() []Case {
	return []Case{
		{"writes from many goroutines stay whole and ordered", seamBurst, "probe"},
		{"one oversized write closes that connection with a reason", seamOverflow, "probe"},
		{"a failing session's writes are flushed before close", seamFail, "probe"},
		{"a session reporting more bytes consumed than it got closes that connection only", seamOverrun, "probe"},
		{"CloseWith's last bytes come after every write, from any goroutine, and nothing after them", seamCloseWith, "probe"},
		{"unconsumed input over the limit closes with a reason", seamHold, "probe"},
		{"a connection closed while its peer still sends ends with the farewell and a FIN, not a reset", seamCloseWhileSending, "probe"},
		{"a slow reader meets backpressure, not overflow", seamBackpressure, "echo"},
		{"a paused connection's input waits out the pause; another connection on its loop does not", seamPause, "probe"},
		{"Shutdown ends at its deadline while replies wait on a peer that does not read", seamShutdownStuckPeer, "echo"},
		{"a cancelled Shutdown context cuts the drain", seamShutdownCancelled, "echo"},
		{"a connection attempted while Shutdown drains is refused", seamShutdownRefuses, "echo"},
	}
}

// RunSeam runs SeamCases against model, each on a fresh server.
func RunSeam(t *testing.T, model string) {
	cfg := engine.Config{MaxPending: seamLimit, MaxInbound: seamLimit}
	runCases(t, model, cfg, SeamCases())
}

// command sends cmd and returns a reader of the server's lines.
func command(t *testing.T, c net.Conn, cmd string) *bufio.Reader {
	t.Helper()
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		t.Fatalf("send %q: %v", cmd, err)
	}
	return bufio.NewReader(c)
}

func seamBurst(t *testing.T, s *Server) {
	const goroutines, each, size = 8, 100, 64 // 51,200 bytes: under seamLimit
	c := s.Dial(t)
	r := command(t, c, fmt.Sprintf("burst %d %d %d", goroutines, each, size))
	next := make([]int, goroutines)
	for range goroutines * each {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %v lines: %v", next, err)
		}
		if len(line) != size {
			t.Fatalf("line %q has %d bytes, want %d: writes were interleaved", line, len(line), size)
		}
		f := strings.Fields(line)
		g, err1 := strconv.Atoi(f[0])
		i, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil || g < 0 || g >= goroutines {
			t.Fatalf("malformed line %q", line)
		}
		if i != next[g] {
			t.Fatalf("goroutine %d: line %d arrived when %d was due", g, i, next[g])
		}
		next[g]++
	}
}

// seamCloseWith closes with last words while another goroutine is still
// writing: the writer's chunks come whole, then the last words, then the
// end, and nothing the writer writes later. It runs its own server with
// room for the whole flood, so the writer can only stop at the close.
func seamCloseWith(t *testing.T, s *Server) {
	const chunk, chunks = 16, 1 << 20 // 16 MiB
	s = Start(t, s.Model.Name, Probe(), probeCfg(engine.Config{MaxPending: 2 * chunk * chunks}))
	c := s.Dial(t)
	if _, err := fmt.Fprintf(c, "flood %d %d\n", chunk, chunks); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	// The flood is running once its first bytes are here.
	if _, err := r.Peek(chunk); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "end\n"); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading to the end: %v (got %q)", err, tail(got))
	}
	flood, ok := bytes.CutSuffix(got, []byte("END\n"))
	if !ok || len(flood)%chunk != 0 || bytes.Trim(flood, "x") != nil {
		t.Fatalf("the connection ended with %q after %d bytes: want whole chunks of x, then END, then the end", tail(got), len(got))
	}
	if len(flood) == chunk*chunks {
		t.Fatalf("the whole flood came before END: the close did not race the writer")
	}
}

// expectEnd reads what remains and checks it ends with want and then EOF.
func expectEnd(t *testing.T, r io.Reader, want string) {
	t.Helper()
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading to the end: %v (got %q)", err, tail(rest))
	}
	if !bytes.HasSuffix(rest, []byte(want)) {
		t.Fatalf("connection ended with %q, want %q", tail(rest), want)
	}
}

func tail(b []byte) []byte { return b[max(0, len(b)-80):] }

func seamOverflow(t *testing.T, s *Server) {
	a := s.Dial(t)
	r := command(t, a, fmt.Sprintf("flood %d 1", seamLimit+1))
	expectEnd(t, r, "BYE "+handler.ErrOverflow.Error()+"\n")
	if s.Model.Sequential {
		return
	}
	b := s.Dial(t)
	if line, err := command(t, b, "ping").ReadString('\n'); line != "pong\n" || err != nil {
		t.Fatalf("another connection after the overflow: %q, %v", line, err)
	}
}

func seamFail(t *testing.T, s *Server) {
	c := s.Dial(t)
	expectEnd(t, command(t, c, "ping\nfail"), "pong\nfailing\n")
}

// seamOverrun checks that an impossible Data result (a session bug) ends
// that connection after what the session wrote, and nothing else: the
// server keeps serving. (Under fork and prefork a child that panicked
// would pass too; the in-process models are where a panic shows.)
func seamOverrun(t *testing.T, s *Server) {
	c := s.Dial(t)
	expectEnd(t, command(t, c, "ping\noverrun"), "pong\n")
	b := s.Dial(t)
	if line, err := command(t, b, "ping").ReadString('\n'); line != "pong\n" || err != nil {
		t.Fatalf("another connection after the overrun: %q, %v", line, err)
	}
}

func seamHold(t *testing.T, s *Server) {
	c := s.Dial(t)
	// Exactly one byte over the limit, so the server reads everything and
	// closes with a FIN rather than a reset.
	msg := append([]byte("hold\n"), bytes.Repeat([]byte("y"), seamLimit+1)...)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	expectEnd(t, c, "BYE "+handler.ErrInputTooLarge.Error()+"\n")
}

// seamCloseWhileSending keeps writing after "hold" until the server
// closes the connection for the unconsumed input. Linux answers input that
// arrives after a close with a reset, which would cost the client the
// farewell it has not read yet (or turn the end into an error): the server
// must end its side first and drop what keeps coming.
func seamCloseWhileSending(t *testing.T, s *Server) {
	c := s.Dial(t)
	if _, err := io.WriteString(c, "hold\n"); err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		chunk := bytes.Repeat([]byte("z"), 4<<10)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	got, err := io.ReadAll(c)
	close(stop)
	<-done
	want := "BYE " + handler.ErrInputTooLarge.Error() + "\n"
	if string(got) != want || err != nil {
		t.Fatalf("the connection ended with %q (%v), want %q then the end", tail(got), err, want)
	}
}

// seamBackpressure writes 8 MiB to an echo server while reading the echo
// at about 30 MiB/s. Without backpressure the server's outbound buffer
// (64 KiB here) would overflow and the connection would close.
func seamBackpressure(t *testing.T, s *Server) {
	c := s.Dial(t)
	p := payload(8 << 20)
	if err := roundTripPaced(c, p, writeAll, 32<<10, time.Millisecond); err != nil {
		t.Fatal(err)
	}
}
