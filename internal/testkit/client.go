package testkit

import (
	"crypto/tls"
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

// Client speaks frames to a server under test over one connection: the
// chat protocol (docs/protocol.md) in length or line framing, or lines to
// the conformance probe or an echo. Every read and write is bounded by
// Timeout. The methods that return an error are safe to use from
// goroutines other than the test's; the others fail the test.
type Client struct {
	// Name says who the client is in failure messages: its nick once
	// Join, or the test, sets it.
	Name string
	// Skip, if set, drops the frames it reports true for, as they arrive:
	// presence from other hubs that may come late, say (Presence). A frame
	// that Next, NextPrefix or Call waits for is never dropped.
	Skip func(f string) bool
	// Timeout bounds each read and each write; 0 means Bound.
	Timeout time.Duration

	t    testing.TB
	conn net.Conn
	kind frame.Kind
	r    *frame.Reader
}

// NewClient is a client on conn (TCP, or TLS over it) in framing kind. The
// connection is closed when the test ends.
func NewClient(t testing.TB, conn net.Conn, kind frame.Kind) *Client {
	t.Helper()
	t.Cleanup(func() { conn.Close() })
	r, err := frame.NewReader(conn, kind, 0)
	if err != nil {
		t.Fatal(err)
	}
	return &Client{t: t, conn: conn, kind: kind, r: r, Name: "client"}
}

// Dialer makes a client's connection; the zero value dials plainly.
type Dialer struct {
	// Stall shrinks the socket's receive buffer and its MSS, so that a
	// client that does not read stops the server's writes after about
	// 100 KiB rather than megabytes.
	Stall bool
	// Skip is the clients' Skip.
	Skip func(f string) bool
	// TLS, if set, makes the connection TLS with this config, its
	// handshake done by the time Dial returns.
	TLS *tls.Config
}

// Dial connects to addr without reading anything.
func (d Dialer) Dial(t testing.TB, addr string, kind frame.Kind) (*Client, error) {
	t.Helper()
	nd := net.Dialer{Timeout: Bound}
	if d.Stall {
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
	c, err := nd.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if d.TLS != nil {
		tc := tls.Client(c, d.TLS)
		tc.SetDeadline(time.Now().Add(Bound))
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		tc.SetDeadline(time.Time{})
		c = tc
	}
	cl := NewClient(t, c, kind)
	cl.Skip = d.Skip
	return cl, nil
}

// Hello connects to the chat server at addr and reads its greeting,
// "HELLO tcplab 1 <guest nick>", which names the client.
func (d Dialer) Hello(t testing.TB, addr string, kind frame.Kind) (*Client, error) {
	t.Helper()
	c, err := d.Dial(t, addr, kind)
	if err != nil {
		return nil, err
	}
	hello, err := c.Read()
	if err != nil {
		return nil, fmt.Errorf("waiting for HELLO: %w", err)
	}
	f := strings.Fields(hello)
	if len(f) != 4 || f[0] != "HELLO" || f[1] != "tcplab" || f[2] != "1" || !strings.HasPrefix(f[3], "guest-") {
		return nil, fmt.Errorf("first frame %q, want HELLO tcplab 1 guest-<n>", Cut(hello))
	}
	c.Name = f[3]
	return c, nil
}

// Join connects to the chat server at addr, reads HELLO and, if nick or
// room are given, takes the nick and joins the room. While it does, it
// passes over presence (Presence) too: other hubs' earlier moves may still
// be on their way.
func (d Dialer) Join(t testing.TB, addr string, kind frame.Kind, nick, room string) *Client {
	t.Helper()
	c, err := d.Hello(t, addr, kind)
	if err != nil {
		t.Fatal(err)
	}
	c.Skip = func(f string) bool { return Presence(f) || d.Skip != nil && d.Skip(f) }
	if nick != "" {
		c.Call("/nick "+nick, "OK nick "+nick)
		c.Name = nick
	}
	if room != "" {
		c.Call("/join "+room, "OK join "+room)
	}
	c.Skip = d.Skip
	return c
}

// Dial connects a client to addr (Dialer.Dial), failing the test if it
// cannot.
func Dial(t testing.TB, addr string, kind frame.Kind) *Client {
	t.Helper()
	c, err := Dialer{}.Dial(t, addr, kind)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Join is Dialer{}.Join.
func Join(t testing.TB, addr string, kind frame.Kind, nick, room string) *Client {
	t.Helper()
	return Dialer{}.Join(t, addr, kind, nick, room)
}

// Presence reports whether f is a chat presence frame (JOIN or LEAVE).
func Presence(f string) bool {
	return strings.HasPrefix(f, "JOIN ") || strings.HasPrefix(f, "LEAVE ")
}

// Conn is the client's connection, for what the methods do not cover.
func (c *Client) Conn() net.Conn { return c.conn }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return Bound
}

// Send writes each payload as one frame, all in one write.
func (c *Client) Send(payloads ...string) error {
	var b []byte
	for _, p := range payloads {
		var err error
		if b, err = frame.Append(b, c.kind, 0, []byte(p)); err != nil {
			return err
		}
	}
	return c.Write(b)
}

// Write writes raw bytes.
func (c *Client) Write(b []byte) error {
	c.conn.SetWriteDeadline(time.Now().Add(c.timeout()))
	if _, err := c.conn.Write(b); err != nil {
		return fmt.Errorf("%s: write: %w", c.Name, err)
	}
	return nil
}

// MustSend is Send, failing the test on an error.
func (c *Client) MustSend(payloads ...string) {
	c.t.Helper()
	if err := c.Send(payloads...); err != nil {
		c.t.Fatalf("%s: send: %v", c.Name, err)
	}
}

// Read returns the next frame that Skip does not drop. At the end of the
// stream the error is io.EOF.
func (c *Client) Read() (string, error) { return c.read(nil) }

// read returns the next frame that Skip does not drop, or that wanted
// reports true for.
func (c *Client) read(wanted func(string) bool) (string, error) {
	for {
		c.conn.SetReadDeadline(time.Now().Add(c.timeout()))
		p, err := c.r.Next()
		if err != nil {
			return "", err
		}
		if f := string(p); c.Skip == nil || !c.Skip(f) || wanted != nil && wanted(f) {
			return f, nil
		}
	}
}

// MustRead is Read, failing the test on an error.
func (c *Client) MustRead() string {
	c.t.Helper()
	f, err := c.Read()
	if err != nil {
		c.t.Fatalf("%s: reading a frame: %v", c.Name, err)
	}
	return f
}

// Next reads the next frame and requires it to be want.
func (c *Client) Next(want string) {
	c.t.Helper()
	got, err := c.read(func(f string) bool { return f == want })
	if err != nil {
		c.t.Fatalf("%s: waiting for %q: %v", c.Name, want, err)
	}
	if got != want {
		c.t.Fatalf("%s: got %q, want %q", c.Name, Cut(got), want)
	}
}

// NextPrefix reads the next frame, requires it to start with prefix, and
// returns it.
func (c *Client) NextPrefix(prefix string) string {
	c.t.Helper()
	got, err := c.read(func(f string) bool { return strings.HasPrefix(f, prefix) })
	if err != nil {
		c.t.Fatalf("%s: waiting for %q...: %v", c.Name, prefix, err)
	}
	if !strings.HasPrefix(got, prefix) {
		c.t.Fatalf("%s: got %q, want %q...", c.Name, Cut(got), prefix)
	}
	return got
}

// Call sends a frame and requires the next frame to be want.
func (c *Client) Call(payload, want string) {
	c.t.Helper()
	c.MustSend(payload)
	c.Next(want)
}

// Sync sends the chat's /ping and returns the frames that arrive before
// its PONG.
func (c *Client) Sync() []string {
	c.t.Helper()
	c.MustSend("/ping")
	var got []string
	for {
		f, err := c.Read()
		if err != nil {
			c.t.Fatalf("%s: waiting for PONG after %q: %v", c.Name, got, err)
		}
		if f == "PONG" {
			return got
		}
		got = append(got, f)
	}
}

// Quiet checks that nothing arrived for the client: a /ping's PONG is the
// next frame. It is a negative check, so it waits for nothing: it can miss
// a frame still on its way, never report one that is not there.
func (c *Client) Quiet() {
	c.t.Helper()
	if got := c.Sync(); len(got) > 0 {
		c.t.Fatalf("%s: unexpected frames %q", c.Name, got)
	}
}

// End requires the next frames to be want..., and then the end of the
// stream.
func (c *Client) End(want ...string) {
	c.t.Helper()
	for _, w := range want {
		c.Next(w)
	}
	if f, err := c.Read(); !errors.Is(err, io.EOF) {
		c.t.Fatalf("%s: after %q: got (%q, %v), want the end of the stream", c.Name, want, Cut(f), err)
	}
}

// ReadUntil reads frames until the frame last, passing every other frame
// to each. It returns each's first error, or an error if the stream ends
// first. It is for goroutines other than the test's.
func (c *Client) ReadUntil(last string, each func(f string) error) error {
	for {
		f, err := c.Read()
		if err != nil {
			return fmt.Errorf("%s: stream ended (%v) before %q", c.Name, err, last)
		}
		if f == last {
			return nil
		}
		if err := each(f); err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
	}
}

// Cut shortens a frame for a failure message.
func Cut(f string) string {
	if len(f) > 100 {
		return fmt.Sprintf("%s... (%d bytes)", f[:100], len(f))
	}
	return f
}
