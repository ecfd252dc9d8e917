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

// checkSplits decodes data in one feed, then split at every point into two
// feeds the way an engine delivers them (unconsumed bytes first, then new
// ones), and requires the same frames and the same verdict each time.
func checkSplits(t *testing.T, kind Kind, data []byte) {
	if len(data) > 4096 {
		return
	}
	whole, _, wholeErr := drain(mustDecoder(t, kind, fuzzMax), data)
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
		if (err == nil) != (wholeErr == nil) {
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
	f.Add(h(0))                                                // zero length
	f.Add(h(0xFFFFFFFF))                                       // all ones
	f.Add(h(fuzzMax + 1))                                      // max+1
	f.Add(h(fuzzMax))                                          // exactly max, body missing
	f.Add([]byte{0, 0})                                        // truncated header
	f.Add(append(h(5), "abc"...))                              // truncated body
	f.Add(append(append(h(1), 'x'), append(h(2), "yz"...)...)) // two frames
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
	f.Fuzz(func(t *testing.T, data []byte) { checkSplits(t, Line, data) })
}

// FuzzRoundTrip encodes a payload with Append and decodes it back.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("a"), true)
	f.Add([]byte(""), false)
	f.Add([]byte("x\ny"), false)
	f.Add(bytes.Repeat([]byte("z"), fuzzMax+1), true)
	f.Fuzz(func(t *testing.T, payload []byte, length bool) {
		kind := Line
		if length {
			kind = Length
		}
		enc, err := Append([]byte("prefix"), kind, fuzzMax, payload)
		if err != nil {
			if !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrEmpty) && !errors.Is(err, ErrNewline) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		got, n, err := mustDecoder(t, kind, fuzzMax).Decode(enc[len("prefix"):])
		if err != nil || n != len(enc)-len("prefix") {
			t.Fatalf("decode: n=%d err=%v", n, err)
		}
		want := payload
		if kind == Line {
			want = bytes.TrimSuffix(payload, []byte("\r"))
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("round trip: got %q want %q", got, want)
		}
	})
}
