package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func mustDecoder(t testing.TB, k Kind, max int) *Decoder {
	t.Helper()
	d, err := NewDecoder(k, max)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func header(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }

func TestLengthDecode(t *testing.T) {
	cases := []struct {
		name    string
		in      []byte
		max     int
		payload string
		n       int
		err     error
	}{
		{"complete", append(header(3), "abcX"...), 10, "abc", 7, nil},
		{"exactly max", append(header(4), "abcd"...), 4, "abcd", 8, nil},
		{"zero length", header(0), 10, "", 0, ErrEmpty},
		{"all ones", header(0xFFFFFFFF), 10, "", 0, ErrTooLarge},
		{"max+1", header(11), 10, "", 0, ErrTooLarge},
		{"default max+1", header(DefaultMax + 1), 0, "", 0, ErrTooLarge},
		{"truncated header", []byte{0, 0, 1}, 10, "", 0, nil},
		{"truncated body", append(header(5), "abc"...), 10, "", 0, nil},
		{"empty input", nil, 10, "", 0, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, n, err := mustDecoder(t, Length, tc.max).Decode(tc.in)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if string(p) != tc.payload || n != tc.n {
				t.Fatalf("got (%q, %d), want (%q, %d)", p, n, tc.payload, tc.n)
			}
		})
	}
}

func TestLineDecode(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		max     int
		payload string
		n       int
		err     error
	}{
		{"lf", "hello\nrest", 10, "hello", 6, nil},
		{"crlf", "hello\r\n", 10, "hello", 7, nil},
		{"empty line", "\n", 10, "", 1, nil},
		{"only one cr dropped", "a\r\r\n", 10, "a\r", 4, nil},
		{"exactly max", "abcd\n", 4, "abcd", 5, nil},
		{"exactly max with cr", "abcd\r\n", 4, "abcd", 6, nil},
		{"max+1 with newline", "abcde\n", 4, "", 0, ErrTooLarge},
		{"max+1 without newline", "abcde", 4, "", 0, ErrTooLarge},
		{"max then cr, waiting", "abcd\r", 4, "", 0, nil},
		{"partial", "abc", 10, "", 0, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, n, err := mustDecoder(t, Line, tc.max).Decode([]byte(tc.in))
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if string(p) != tc.payload || n != tc.n {
				t.Fatalf("got (%q, %d), want (%q, %d)", p, n, tc.payload, tc.n)
			}
		})
	}
}

// TestLineScanIsIncremental feeds a long line one byte at a time, the way an
// engine passes accumulated bytes, and checks the result is the same line.
func TestLineScanIsIncremental(t *testing.T) {
	d := mustDecoder(t, Line, 1<<16)
	line := strings.Repeat("x", 50000) + "\n"
	for i := 1; i <= len(line); i++ {
		p, n, err := d.Decode([]byte(line[:i]))
		if err != nil {
			t.Fatal(err)
		}
		if i < len(line) && n != 0 {
			t.Fatalf("frame reported after %d bytes", i)
		}
		if i == len(line) && (n != len(line) || len(p) != 50000) {
			t.Fatalf("final decode = (%d bytes, n=%d)", len(p), n)
		}
	}
}

func TestAppendRefuses(t *testing.T) {
	if _, err := Append(nil, Length, 4, nil); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty length payload: %v", err)
	}
	if _, err := Append(nil, Length, 4, []byte("abcde")); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: %v", err)
	}
	if _, err := Append(nil, Line, 10, []byte("a\nb")); !errors.Is(err, ErrNewline) {
		t.Errorf("newline: %v", err)
	}
	if _, err := Append(nil, Kind("morse"), 10, []byte("a")); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("kind: %v", err)
	}
	if _, err := ParseKind("morse"); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("ParseKind: %v", err)
	}
}

func TestReaderOneByteAtATime(t *testing.T) {
	for _, k := range []Kind{Length, Line} {
		var stream []byte
		want := []string{"a", strings.Repeat("b", 10000), "c c"}
		for _, w := range want {
			var err error
			if stream, err = Append(stream, k, 0, []byte(w)); err != nil {
				t.Fatal(err)
			}
		}
		r, err := NewReader(iotest.OneByteReader(bytes.NewReader(stream)), k, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			got, err := r.Next()
			if err != nil || string(got) != w {
				t.Fatalf("%s: Next = (%d bytes, %v), want %d bytes", k, len(got), err, len(w))
			}
		}
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("%s: at end: %v, want io.EOF", k, err)
		}
	}
}

// TestReaderRefusesHugeHeaderBeforeReadingBody gives the Reader only a header
// announcing 4 GiB; it must fail on the header instead of waiting for (or
// allocating) the body.
func TestReaderRefusesHugeHeaderBeforeReadingBody(t *testing.T) {
	r, err := NewReader(bytes.NewReader(header(0xFFFFFFFF)), Length, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Next = %v, want ErrTooLarge", err)
	}
	if cap(r.buf) > 4096 {
		t.Fatalf("reader grew its buffer to %d bytes", cap(r.buf))
	}
}

func TestReaderTruncated(t *testing.T) {
	r, err := NewReader(bytes.NewReader(append(header(10), "abc"...)), Length, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Next = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestLinePayloadEndingInCR(t *testing.T) {
	for _, p := range []string{"hi\r", "\r", "a\r\r"} {
		enc, err := Append(nil, Line, 0, []byte(p))
		if err != nil {
			t.Fatal(err)
		}
		got, n, err := mustDecoder(t, Line, 0).Decode(enc)
		if err != nil || n != len(enc) || string(got) != p {
			t.Errorf("%q framed as %q decodes to %q (n %d, %v)", p, enc, got, n, err)
		}
	}
}

func TestMaxIsCapped(t *testing.T) {
	const huge = int(^uint(0) >> 1) // the largest int
	if got := mustDecoder(t, Length, huge).Max(); got != MaxLimit {
		t.Errorf("NewDecoder(huge).Max() = %d, want MaxLimit %d", got, MaxLimit)
	}
	// A Reader with the largest max still grows its buffer by doubling: a
	// 256 KiB frame takes a handful of reads, not one per byte.
	payload := bytes.Repeat([]byte("x"), 256<<10)
	enc, _ := Append(nil, Length, 0, payload)
	reads := 0
	r, err := NewReader(countReads{bytes.NewReader(enc), &reads}, Length, huge)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.Next(); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("Next: %d bytes, %v", len(got), err)
	}
	if reads > 20 {
		t.Errorf("%d reads for a 256 KiB frame: the buffer did not double", reads)
	}
}

type countReads struct {
	r io.Reader
	n *int
}

func (c countReads) Read(p []byte) (int, error) {
	*c.n++
	return c.r.Read(p)
}

// emptyReads returns (0, nil) n times before each real read.
type emptyReads struct {
	r       io.Reader
	n, left int
}

func (e *emptyReads) Read(p []byte) (int, error) {
	if e.left > 0 {
		e.left--
		return 0, nil
	}
	e.left = e.n
	return e.r.Read(p)
}

func TestReaderToleratesEmptyReads(t *testing.T) {
	r, err := NewReader(&emptyReads{r: strings.NewReader("hello\n"), n: 3, left: 3}, Line, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.Next(); err != nil || string(got) != "hello" {
		t.Fatalf("after empty reads: %q, %v", got, err)
	}
	// A reader that never returns anything is broken: Next says so.
	r, _ = NewReader(&emptyReads{r: strings.NewReader("x\n"), n: 1000, left: 1000}, Line, 0)
	if _, err := r.Next(); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("a reader stuck returning nothing: %v, want io.ErrNoProgress", err)
	}
}
