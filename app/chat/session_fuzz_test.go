package chat

import (
	"net"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/handler"
)

// memConn is a handler.Conn that keeps what is written, for fuzzing a
// session's input path at full speed. (Everything about real connections
// is checked over TCP by the conformance suite.)
type memConn struct {
	mu     sync.Mutex
	out    []byte
	closed bool
}

func (c *memConn) Write(p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return handler.ErrClosed
	}
	c.out = append(c.out, p...)
	return nil
}

func (c *memConn) Close(error) {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
}

func (c *memConn) CloseWith(last []byte, _ error) {
	c.mu.Lock()
	if !c.closed {
		c.out = append(c.out, last...)
		c.closed = true
	}
	c.mu.Unlock()
}

func (*memConn) LocalAddr() net.Addr  { return &net.TCPAddr{} }
func (*memConn) RemoteAddr() net.Addr { return &net.TCPAddr{} }

// FuzzSession feeds arbitrary bytes, split in two deliveries the way an
// engine passes them, to a session whose room has a second member. Every
// byte the server writes must decode as frames of valid UTF-8 within the
// server frame limit, holding no control character but TAB (nothing a
// client sends reaches a terminal as an escape sequence), and no input may
// panic.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"/nick bob\n/join dev\nhello\n/who\n/rooms\n/msg guest-2 hi\n/quit\n",
		"\xff\xfe\n/nick \xff\n//x\n\n\r\n",
		"/msg guest-1 me\n/join lobby\n/ping\n",
		"red \x1b[31m\nover\rwrite\n/msg guest-2 \xc2\x9b2J\n/nick \x1b\n/help\n",
	} {
		f.Add(string(frame.Line), []byte(s), uint8(5))
	}
	f.Add(string(frame.Length), []byte("\x00\x00\x00\x05/ping\x00\x00\x00\x00"), uint8(3))
	f.Add(string(frame.Length), []byte("\xff\xff\xff\xff"), uint8(1))
	f.Add(string(frame.Length), []byte("\x00\x00\x00\x09two\nlines"), uint8(6))
	f.Fuzz(func(t *testing.T, kind string, in []byte, split uint8) {
		k, err := frame.ParseKind(kind)
		if err != nil {
			return
		}
		h, err := New(Options{Framing: k, MaxFrame: 256})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		var a, b memConn
		sa := h.Open(&a)
		sb := h.Open(&b)
		cut := min(int(split), len(in))
		used, _ := sa.Data(in[:cut])
		rest := append(append([]byte{}, in[used:cut]...), in[cut:]...)
		sa.Data(rest)
		sa.Closed(nil)
		sb.Closed(nil)
		for _, c := range []*memConn{&a, &b} {
			d, _ := frame.NewDecoder(k, MinServerFrame)
			out := c.out
			for len(out) > 0 {
				p, n, err := d.Decode(out)
				if err != nil || n == 0 {
					t.Fatalf("server wrote undecodable bytes %q: %v", out, err)
				}
				if !utf8.Valid(p) {
					t.Fatalf("server frame %q is not UTF-8", p)
				}
				if !ValidText(p) {
					t.Fatalf("server frame %q holds a control character", p)
				}
				out = out[n:]
			}
		}
	})
}
