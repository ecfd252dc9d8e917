// Package frame splits a byte stream into messages and joins messages into a
// byte stream, for two framings:
//
//   - [Length]: a 4-byte unsigned big-endian length N, then N bytes, with
//     1 <= N <= max.
//   - [Line]: the bytes up to "\n", with one trailing "\r" dropped; at most
//     max bytes of content. (So [Append] ends a payload that ends in "\r"
//     with "\r\n": every payload without "\n" survives a round trip.)
//
// The [Decoder] is incremental and allocation-free: it is fed whatever bytes
// have arrived, returns complete frames as sub-slices of its input, and says
// how many bytes it consumed. That fits the engine seam (handler.Session.Data)
// directly. A header that announces more than max is an error at once,
// before anything of that size is buffered or allocated.
//
// [Reader] wraps an io.Reader for clients, and [Append] encodes.
package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Kind names a framing.
type Kind string

const (
	// Length is a 4-byte big-endian length prefix followed by the payload.
	Length Kind = "length"
	// Line is text terminated by "\n" (a trailing "\r" is dropped).
	Line Kind = "line"
)

// DefaultMax is the default largest payload, 1 MiB.
const DefaultMax = 1 << 20

// MaxLimit is the largest max a Decoder, Reader or Append takes; a larger
// one is lowered to it. A frame of a GiB is already far past any sane
// protocol, and the cap keeps size arithmetic (max plus framing) within
// an int on every platform.
const MaxLimit = 1 << 30

// limit returns the max a caller asked for, with DefaultMax for max <= 0
// and MaxLimit as the ceiling.
func limit(max int) int {
	if max <= 0 {
		return DefaultMax
	}
	return min(max, MaxLimit)
}

// HeaderLen is the size of a Length frame's header.
const HeaderLen = 4

var (
	// ErrTooLarge means a frame is longer than the decoder's max.
	ErrTooLarge = errors.New("frame too large")
	// ErrEmpty means a Length frame announced zero bytes.
	ErrEmpty = errors.New("empty frame")
	// ErrNewline means a payload given to a Line encoder contains "\n".
	ErrNewline = errors.New("line payload contains a newline")
	// ErrUnknownKind means a framing name is not one of Length or Line.
	ErrUnknownKind = errors.New("unknown framing")
)

// ParseKind returns the Kind named s ("length" or "line").
func ParseKind(s string) (Kind, error) {
	switch Kind(s) {
	case Length, Line:
		return Kind(s), nil
	}
	return "", fmt.Errorf("%w %q (want length or line)", ErrUnknownKind, s)
}

// Decoder splits a stream into frames. The zero value is not usable; call
// NewDecoder. A Decoder keeps a little state between calls (how far a Line
// decoder has already scanned), so use one per stream.
type Decoder struct {
	kind    Kind
	max     int
	scanned int // Line: bytes of the current input already known to hold no '\n'
}

// NewDecoder returns a decoder for kind with the given max payload size. A
// max <= 0 means DefaultMax; a max over MaxLimit means MaxLimit.
func NewDecoder(kind Kind, max int) (*Decoder, error) {
	if _, err := ParseKind(string(kind)); err != nil {
		return nil, err
	}
	return &Decoder{kind: kind, max: limit(max)}, nil
}

// Max returns the largest payload the decoder accepts.
func (d *Decoder) Max() int { return d.max }

// Kind returns the decoder's framing.
func (d *Decoder) Kind() Kind { return d.kind }

// Decode looks for one complete frame at the front of in. It returns the
// payload (a sub-slice of in) and the number of bytes the frame took,
// header and terminator included. When in holds no complete frame yet, it
// returns n == 0 and a nil error: call again with the same bytes plus more.
// Once Decode returns an error the stream is unusable.
//
// To drain a buffer, call Decode repeatedly on in[n:] until n == 0.
func (d *Decoder) Decode(in []byte) (payload []byte, n int, err error) {
	if d.kind == Length {
		return d.decodeLength(in)
	}
	return d.decodeLine(in)
}

func (d *Decoder) decodeLength(in []byte) ([]byte, int, error) {
	if len(in) < HeaderLen {
		return nil, 0, nil
	}
	size := binary.BigEndian.Uint32(in)
	if size == 0 {
		return nil, 0, fmt.Errorf("%w: length header is 0", ErrEmpty)
	}
	if uint64(size) > uint64(d.max) {
		return nil, 0, fmt.Errorf("%w: length header says %d bytes, max %d", ErrTooLarge, size, d.max)
	}
	end := HeaderLen + int(size)
	if len(in) < end {
		return nil, 0, nil
	}
	return in[HeaderLen:end:end], end, nil
}

func (d *Decoder) decodeLine(in []byte) ([]byte, int, error) {
	// Bytes before d.scanned were searched by an earlier call that found
	// no newline; the caller passes them again, so skip them.
	from := min(d.scanned, len(in))
	i := bytes.IndexByte(in[from:], '\n')
	if i < 0 {
		d.scanned = len(in)
		// Content is at most max bytes, plus an optional '\r'.
		if len(in) > d.max+1 || (len(in) == d.max+1 && in[d.max] != '\r') {
			return nil, 0, fmt.Errorf("%w: no newline within %d bytes", ErrTooLarge, d.max)
		}
		return nil, 0, nil
	}
	d.scanned = 0
	end := from + i
	line := in[:end:end]
	if end > 0 && line[end-1] == '\r' {
		line = line[: end-1 : end-1]
	}
	if len(line) > d.max {
		return nil, 0, fmt.Errorf("%w: line of %d bytes, max %d", ErrTooLarge, len(line), d.max)
	}
	return line, end + 1, nil
}

// Append appends payload, framed as kind, to dst and returns the extended
// slice. It refuses payloads the matching decoder would refuse: longer than
// max (max <= 0 means DefaultMax, and MaxLimit caps it), empty for Length,
// or holding "\n" for Line. A Line payload that ends in "\r" is ended with
// "\r\n", so that the decoder, which drops one "\r" before the "\n",
// returns it unchanged.
func Append(dst []byte, kind Kind, max int, payload []byte) ([]byte, error) {
	max = limit(max)
	if len(payload) > max {
		return dst, fmt.Errorf("%w: payload of %d bytes, max %d", ErrTooLarge, len(payload), max)
	}
	switch kind {
	case Length:
		if len(payload) == 0 {
			return dst, ErrEmpty
		}
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
		return append(dst, payload...), nil
	case Line:
		if bytes.IndexByte(payload, '\n') >= 0 {
			return dst, ErrNewline
		}
		dst = append(dst, payload...)
		if len(payload) > 0 && payload[len(payload)-1] == '\r' {
			dst = append(dst, '\r')
		}
		return append(dst, '\n'), nil
	}
	return dst, fmt.Errorf("%w %q", ErrUnknownKind, kind)
}
