package work

import (
	"bytes"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tcplab/tcplab/frame"
)

// FuzzParseRequest checks the parser against the grammar: a request it
// accepts has a known verb and numbers within the limits, and formats
// back (AppendRequest) to a frame that parses the same; a refusal has one
// of the documented codes and a detail that is valid UTF-8 of bounded
// length.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{"sha 1 abc", "sha 1000 x", "sha 1001 x", "sha 0 x", "sha 007 y", "sha 1", "sha  1 x",
		"sleep 0", "sleep 50000", "sleep 50001", "sleep -1", "sleep", "echo hi", "echo", "echo ", "ECHO x", "",
		"sha 99999999999999999999999999999 x", "sha 1 \xff", "\xff\xfe"} {
		f.Add([]byte(s))
	}
	codes := []string{CodeTooMuch, CodeUsage, CodeUnknownCommand}
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := ParseRequest(p, testLimits)
		if err != nil {
			if !slices.Contains(codes, err.Code) || !utf8.ValidString(err.Detail) || len(err.Detail) > 256 {
				t.Fatalf("%q: error %q %q", p, err.Code, err.Detail)
			}
			return
		}
		switch r.Verb {
		case VerbSha:
			if r.Rounds < 1 || r.Rounds > testLimits.MaxSha || len(r.Text) == 0 {
				t.Fatalf("%q: %+v", p, r)
			}
		case VerbSleep:
			if r.Sleep < 0 || r.Sleep > testLimits.MaxSleep || r.Text != nil {
				t.Fatalf("%q: %+v", p, r)
			}
		case VerbEcho:
			if len(r.Text) == 0 || !bytes.HasSuffix(p, r.Text) {
				t.Fatalf("%q: %+v", p, r)
			}
		default:
			t.Fatalf("%q: verb %d", p, r.Verb)
		}
		back := AppendRequest(nil, r)
		if again, err := ParseRequest(back, testLimits); err != nil || !sameRequest(again, r) {
			t.Fatalf("%q: %+v formats as %q, which parses as (%+v, %v)", p, r, back, again, err)
		}
	})
}

// FuzzSession feeds a session arbitrary bytes in two pieces, as a
// connection may deliver them. Every reply must be one whole frame, OK or
// ERR, one per complete request frame and in order; a framing error must
// close the connection after an ERR and BYE, and nothing else may.
func FuzzSession(f *testing.F) {
	req := func(ps ...string) []byte {
		var b []byte
		for _, p := range ps {
			b, _ = frame.Append(b, frame.Length, 0, []byte(p))
		}
		return b
	}
	f.Add(req("sha 3 x", "echo hi", "sleep 1", "nope"), 5)
	f.Add(append(req("echo a"), 0, 0, 0, 0), 3)
	f.Add(append(req("echo a"), 0, 0, 4, 1), 1)
	f.Add(req("sha 51 x", "echo \xff"), 0)
	f.Fuzz(func(t *testing.T, in []byte, split int) {
		h, err := New(Options{MaxSha: 50, MaxSleep: time.Microsecond, MaxFrame: 512})
		if err != nil {
			t.Fatal(err)
		}
		c := &fakeConn{}
		s := h.Open(c)
		split = min(max(split, 0), len(in))
		used, err := s.Data(in[:split])
		if err != nil {
			t.Fatal(err)
		}
		rest := append(slices.Clone(in[used:split]), in[split:]...)
		if _, err := s.Data(rest); err != nil {
			t.Fatal(err)
		}
		// What the session should have seen: the complete frames, up to a
		// framing error.
		dec, _ := frame.NewDecoder(frame.Length, 512)
		var frames int
		var ferr error
		for b := in; ; {
			_, n, err := dec.Decode(b)
			if err != nil || n == 0 {
				ferr = err
				break
			}
			frames++
			b = b[n:]
		}
		r, _ := frame.NewReader(bytes.NewReader(c.out.Bytes()), frame.Length, 0)
		for i := range frames {
			p, err := r.Next()
			if err != nil || !(bytes.HasPrefix(p, []byte("OK ")) || bytes.HasPrefix(p, []byte("ERR "))) || !utf8.Valid(p) {
				t.Fatalf("reply %d of %d: (%q, %v)", i+1, frames, p, err)
			}
		}
		if ferr == nil {
			if c.closed {
				t.Fatalf("closed without a framing error")
			}
			if p, err := r.Next(); err == nil {
				t.Fatalf("an extra reply %q", p)
			}
			return
		}
		errFrame, err1 := r.Next()
		bye, err2 := r.Next()
		if !c.closed || err1 != nil || err2 != nil || !strings.HasPrefix(string(errFrame), "ERR ") || !strings.HasPrefix(string(bye), "BYE ") {
			t.Fatalf("after a framing error (%v): closed %v, then %q %q", ferr, c.closed, errFrame, bye)
		}
	})
}

// fakeConn records what a session writes; the fuzz targets run the
// session without a socket.
type fakeConn struct {
	out    bytes.Buffer
	closed bool
}

func (c *fakeConn) Write(p []byte) error {
	if c.closed {
		return net.ErrClosed
	}
	c.out.Write(p)
	return nil
}

func (c *fakeConn) Close(error) { c.closed = true }

func (c *fakeConn) CloseWith(last []byte, _ error) {
	if !c.closed {
		c.out.Write(last)
		c.closed = true
	}
}

func (c *fakeConn) LocalAddr() net.Addr  { return &net.TCPAddr{} }
func (c *fakeConn) RemoteAddr() net.Addr { return &net.TCPAddr{} }
