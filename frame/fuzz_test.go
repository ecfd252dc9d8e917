package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

const fuzzMax = 64

// drain decodes every complete frame at the front of buf. It returns the
// frames, the unconsumed rest, and the first error.
func drain(d *Decoder, buf []byte) (frames []string, rest []byte, err error) {
	for {
		p, n, err := d.Decode(buf)
		if err != nil {
			return frames, buf, err
		}
		if n == 0 {
			return frames, buf, nil
		}
		if len(p) > d.Max() {
			panic("payload over max")
		}
		frames = append(frames, string(p))
		buf = buf[n:]
	}
}

// spec decodes data straight from the package doc's definition of the two
// framings, written apart from the Decoder so that the fuzz targets compare
// two readings of the spec: the complete frames, then nil, or the error the
// first bad frame deserves.
func spec(kind Kind, max int, data []byte) (frames []string, err error) {
	for {
		if kind == Length {
			if len(data) < 4 {
				return frames, nil
			}
			size := uint64(binary.BigEndian.Uint32(data))
			switch {
			case size == 0:
				return frames, ErrEmpty
			case size > uint64(max):
				return frames, ErrTooLarge
			case uint64(len(data)) < 4+size:
				return frames, nil
			}
			frames = append(frames, string(data[4:4+size]))
			data = data[4+size:]
			continue
		}
		line, rest, found := bytes.Cut(data, []byte("\n"))
		if !found {
			// Still valid if it can become a line of at most max bytes:
			// max of content, perhaps followed by the "\r" of a "\r\n".
			if len(data) <= max || len(data) == max+1 && data[max] == '\r' {
				return frames, nil
			}
			return frames, ErrTooLarge
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > max {
			return frames, ErrTooLarge
		}
		frames = append(frames, string(line))
		data = rest
	}
}

// verdict names an error by the sentinel it wraps.
func verdict(err error) error {
	for _, e := range []error{ErrTooLarge, ErrEmpty} {
		if errors.Is(err, e) {
			return e
		}
	}
	return err
}

// checkSplits decodes data in one feed and checks it against spec, then
// split at every point into two feeds the way an engine delivers them
// (unconsumed bytes first, then new ones), and requires the same frames
// and the same verdict each time.
func checkSplits(t *testing.T, kind Kind, data []byte) {
	if len(data) > 4096 {
		return
	}
	whole, _, wholeErr := drain(mustDecoder(t, kind, fuzzMax), data)
	want, wantErr := spec(kind, fuzzMax, data)
	if verdict(wholeErr) != wantErr || len(whole) != len(want) {
		t.Fatalf("one feed: %d frames, %v; the spec says %d frames, %v", len(whole), wholeErr, len(want), wantErr)
	}
	for j := range want {
		if whole[j] != want[j] {
			t.Fatalf("frame %d = %q, the spec says %q", j, whole[j], want[j])
		}
	}
	for i := 0; i <= len(data); i++ {
		d := mustDecoder(t, kind, fuzzMax)
		first, rest, err := drain(d, data[:i])
		got := first
		if err == nil {
			buf := append(append([]byte(nil), rest...), data[i:]...)
			var second []string
			second, _, err = drain(d, buf)
			got = append(got, second...)
		}
		if verdict(err) != verdict(wholeErr) {
			t.Fatalf("split at %d: err %v, one feed: %v", i, err, wholeErr)
		}
		if err == nil && len(got) != len(whole) {
			t.Fatalf("split at %d: %d frames, one feed %d", i, len(got), len(whole))
		}
		for j := range min(len(got), len(whole)) {
			if got[j] != whole[j] {
				t.Fatalf("split at %d: frame %d = %q, one feed %q", i, j, got[j], whole[j])
			}
		}
	}
}

func lengthSeeds(f *testing.F) {
	h := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	f.Add(h(0))                                                      // zero length
	f.Add(h(0xFFFFFFFF))                                             // all ones
	f.Add(h(fuzzMax + 1))                                            // max+1
	f.Add(h(fuzzMax))                                                // exactly max, body missing
	f.Add([]byte{0, 0})                                              // truncated header
	f.Add(append(h(5), "abc"...))                                    // truncated body
	f.Add(append(append(h(1), 'x'), append(h(2), "yz"...)...))       // two frames
	f.Add(append(h(fuzzMax), bytes.Repeat([]byte("m"), fuzzMax)...)) // exactly max, whole
	f.Add(append(append(h(1), 'x'), h(fuzzMax+1)...))                // a frame, then one too large
}

func FuzzLengthDecoder(f *testing.F) {
	lengthSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) { checkSplits(t, Length, data) })
}

func FuzzLineDecoder(f *testing.F) {
	f.Add([]byte("hello\r\nworld\n"))
	f.Add([]byte("\n\n\r\n"))
	f.Add(bytes.Repeat([]byte("x"), fuzzMax+1))                   // max+1, no newline
	f.Add(append(bytes.Repeat([]byte("x"), fuzzMax), '\r', '\n')) // exactly max, CRLF
	f.Add(append(bytes.Repeat([]byte("x"), fuzzMax), '\r'))       // truncated at the CR
	f.Add([]byte("partial"))
	f.Add([]byte("a\r\r\n"))                                        // content ending in CR
	f.Add(append(bytes.Repeat([]byte("x"), fuzzMax), '\r', 'y'))    // max, CR, then not LF
	f.Add(append(bytes.Repeat([]byte("x"), fuzzMax+1), '\r', '\n')) // max+1, CRLF
	f.Fuzz(func(t *testing.T, data []byte) { checkSplits(t, Line, data) })
}

// FuzzRoundTrip encodes a payload with Append and decodes it back: Append
// refuses exactly the payloads the spec rules out, and every other one
// comes back unchanged.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("a"), true)
	f.Add([]byte(""), false)
	f.Add([]byte(""), true)
	f.Add([]byte("x\ny"), false)
	f.Add([]byte("hi\r"), false)
	f.Add([]byte("\r"), false)
	f.Add(bytes.Repeat([]byte("z"), fuzzMax), false)
	f.Add(bytes.Repeat([]byte("z"), fuzzMax+1), true)
	f.Fuzz(func(t *testing.T, payload []byte, length bool) {
		kind := Line
		if length {
			kind = Length
		}
		var deserved error
		switch {
		case len(payload) > fuzzMax:
			deserved = ErrTooLarge
		case kind == Length && len(payload) == 0:
			deserved = ErrEmpty
		case kind == Line && bytes.IndexByte(payload, '\n') >= 0:
			deserved = ErrNewline
		}
		enc, err := Append([]byte("prefix"), kind, fuzzMax, payload)
		if deserved != nil || err != nil {
			if !errors.Is(err, deserved) || deserved == nil {
				t.Fatalf("Append(%q): %v, want %v", payload, err, deserved)
			}
			return
		}
		got, n, err := mustDecoder(t, kind, fuzzMax).Decode(enc[len("prefix"):])
		if err != nil || n != len(enc)-len("prefix") {
			t.Fatalf("decode: n=%d err=%v", n, err)
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("round trip: got %q want %q", got, payload)
		}
	})
}
