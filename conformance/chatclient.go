package conformance

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcplab/tcplab/frame"
)

// chatClient speaks the chat protocol (docs/protocol.md) to a server under
// test. Its methods that return errors are safe to use from goroutines
// other than the test's; the must* ones call t.Fatal.
type chatClient struct {
	t    testing.TB
	c    *net.TCPConn
	kind frame.Kind
	r    *frame.Reader
	nick string // as HELLO gave it
	// skipPresence drops JOIN and LEAVE frames: for a case that runs
	// clients one after another, where an earlier one's LEAVE may arrive
	// late.
	skipPresence bool
}

// chatDialer makes the client's socket; the zero value is the default.
type chatDialer struct {
	// stall shrinks the socket's receive buffer and its MSS, so that a
	// client that does not read stops the server's writes after about
	// 100 KiB rather than megabytes.
	stall bool
}

// dial connects without reading HELLO.
func (d chatDialer) dial(t testing.TB, s *Server, kind frame.Kind) (*chatClient, error) {
	nd := net.Dialer{Timeout: ioTimeout}
	if d.stall {
		nd.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = errors.Join(
					syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096),
					syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, 536))
			})
			return errors.Join(err, serr)
		}
	}
	nc, err := nd.Dial("tcp", s.Addr().String())
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", s.Addr(), err)
	}
	c := nc.(*net.TCPConn)
	c.SetDeadline(time.Now().Add(ioTimeout))
	t.Cleanup(func() { c.Close() })
	r, err := frame.NewReader(c, kind, 0)
	if err != nil {
		return nil, err
	}
	return &chatClient{t: t, c: c, kind: kind, r: r}, nil
}

// join connects and reads HELLO.
func (d chatDialer) join(t testing.TB, s *Server, kind frame.Kind) (*chatClient, error) {
	c, err := d.dial(t, s, kind)
	if err != nil {
		return nil, err
	}
	hello, err := c.next()
	if err != nil {
		return nil, fmt.Errorf("waiting for HELLO: %w", err)
	}
	f := strings.Fields(hello)
	if len(f) != 4 || f[0] != "HELLO" || f[1] != "tcplab" || f[2] != "1" || !strings.HasPrefix(f[3], "guest-") {
		return nil, fmt.Errorf("first frame %q, want HELLO tcplab 1 guest-<n>", hello)
	}
	c.nick = f[3]
	return c, nil
}

// mustJoin connects, reads HELLO and, if nick or room are given, sets them.
func mustJoin(t testing.TB, s *Server, kind frame.Kind, nick, room string) *chatClient {
	t.Helper()
	return chatDialer{}.mustJoin(t, s, kind, nick, room)
}

// mustJoin is the package's mustJoin with d's socket options.
func (d chatDialer) mustJoin(t testing.TB, s *Server, kind frame.Kind, nick, room string) *chatClient {
	t.Helper()
	c, err := d.join(t, s, kind)
	if err != nil {
		t.Fatal(err)
	}
	// While a client joins, presence from other hubs' earlier moves may
	// still be on its way (hubs in other processes deliver it
	// asynchronously): skip it until the replies.
	skip := c.skipPresence
	c.skipPresence = true
	if nick != "" {
		c.mustCall("/nick "+nick, "OK nick "+nick)
		c.nick = nick
	}
	if room != "" {
		c.mustCall("/join "+room, "OK join "+room)
	}
	c.skipPresence = skip
	return c
}

// send writes each payload as one frame.
func (c *chatClient) send(payloads ...string) error {
	var b []byte
	for _, p := range payloads {
		var err error
		if b, err = frame.Append(b, c.kind, 0, []byte(p)); err != nil {
			return err
		}
	}
	_, err := c.c.Write(b)
	return err
}

func (c *chatClient) mustSend(payloads ...string) {
	c.t.Helper()
	if err := c.send(payloads...); err != nil {
		c.t.Fatalf("%s: send: %v", c.nick, err)
	}
}

// next reads one frame.
func (c *chatClient) next() (string, error) {
	for {
		p, err := c.r.Next()
		if err != nil {
			return "", err
		}
		f := string(p)
		if c.skipPresence && (strings.HasPrefix(f, "JOIN ") || strings.HasPrefix(f, "LEAVE ")) {
			continue
		}
		return f, nil
	}
}

// mustNext reads the next frame and requires it to be want.
func (c *chatClient) mustNext(want string) {
	c.t.Helper()
	got, err := c.next()
	if err != nil {
		c.t.Fatalf("%s: waiting for %q: %v", c.nick, want, err)
	}
	if got != want {
		c.t.Fatalf("%s: got %q, want %q", c.nick, cutFrame(got), want)
	}
}

// mustNextPrefix reads the next frame, requires it to start with prefix,
// and returns it.
func (c *chatClient) mustNextPrefix(prefix string) string {
	c.t.Helper()
	got, err := c.next()
	if err != nil {
		c.t.Fatalf("%s: waiting for %q...: %v", c.nick, prefix, err)
	}
	if !strings.HasPrefix(got, prefix) {
		c.t.Fatalf("%s: got %q, want %q...", c.nick, cutFrame(got), prefix)
	}
	return got
}

// mustCall sends a frame and requires the next frame to be want.
func (c *chatClient) mustCall(payload, want string) {
	c.t.Helper()
	c.mustSend(payload)
	c.mustNext(want)
}

// mustSync sends /ping and returns the frames that arrive before PONG.
func (c *chatClient) mustSync() []string {
	c.t.Helper()
	c.mustSend("/ping")
	var got []string
	for {
		f, err := c.next()
		if err != nil {
			c.t.Fatalf("%s: waiting for PONG after %q: %v", c.nick, got, err)
		}
		if f == "PONG" {
			return got
		}
		got = append(got, f)
	}
}

// mustQuiet checks that nothing arrived for c: a /ping's PONG is the next
// frame.
func (c *chatClient) mustQuiet() {
	c.t.Helper()
	if got := c.mustSync(); len(got) > 0 {
		c.t.Fatalf("%s: unexpected frames %q", c.nick, got)
	}
}

// mustEnd requires the next frames to be want..., and then the end of the
// stream.
func (c *chatClient) mustEnd(want ...string) {
	c.t.Helper()
	for _, w := range want {
		c.mustNext(w)
	}
	if f, err := c.next(); !errors.Is(err, io.EOF) {
		c.t.Fatalf("%s: after %q: got (%q, %v), want the end of the stream", c.nick, want, cutFrame(f), err)
	}
}

// readUntil reads frames until the frame last, passing every other frame
// to each. It returns each's first error, or an error if the stream ends
// first. It is for goroutines other than the test's.
func (c *chatClient) readUntil(last string, each func(f string) error) error {
	for {
		f, err := c.next()
		if err != nil {
			return fmt.Errorf("%s: stream ended (%v) before %q", c.nick, err, last)
		}
		if f == last {
			return nil
		}
		if err := each(f); err != nil {
			return fmt.Errorf("%s: %w", c.nick, err)
		}
	}
}

func cutFrame(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}
