package frame

import (
	"errors"
	"fmt"
	"io"
)

// Reader reads frames from an io.Reader, for clients and tests. Its buffer
// grows to at most one frame (max plus framing overhead).
type Reader struct {
	r    io.Reader
	dec  *Decoder
	buf  []byte
	head int // start of unconsumed bytes in buf
	tail int // end of valid bytes in buf
}

// NewReader returns a Reader that decodes kind frames of at most max bytes
// (max <= 0 means DefaultMax, and MaxLimit caps it) from r.
func NewReader(r io.Reader, kind Kind, max int) (*Reader, error) {
	dec, err := NewDecoder(kind, max)
	if err != nil {
		return nil, err
	}
	return &Reader{r: r, dec: dec, buf: make([]byte, 4096)}, nil
}

// Next returns the next frame's payload. The slice is valid until the next
// call. At a clean end of stream it returns io.EOF; a stream that ends
// inside a frame gives io.ErrUnexpectedEOF.
func (fr *Reader) Next() ([]byte, error) {
	for {
		payload, n, err := fr.dec.Decode(fr.buf[fr.head:fr.tail])
		if err != nil {
			return nil, err
		}
		if n > 0 {
			fr.head += n
			return payload, nil
		}
		if err := fr.fill(); err != nil {
			if errors.Is(err, io.EOF) && fr.head < fr.tail {
				return nil, fmt.Errorf("frame: stream ended inside a frame: %w", io.ErrUnexpectedEOF)
			}
			return nil, err
		}
	}
}

// fill reads more bytes, first moving unconsumed bytes to the front and
// growing the buffer if it is full.
func (fr *Reader) fill() error {
	if fr.head > 0 {
		fr.tail = copy(fr.buf, fr.buf[fr.head:fr.tail])
		fr.head = 0
	}
	if fr.tail == len(fr.buf) {
		limit := fr.dec.Max() + HeaderLen + 2
		size := min(2*len(fr.buf), limit)
		if size <= len(fr.buf) {
			size = len(fr.buf) + 1 // the decoder reports the overflow
		}
		nb := make([]byte, size)
		copy(nb, fr.buf[:fr.tail])
		fr.buf = nb
	}
	// A Read may return nothing and no error now and then (io.Reader
	// allows it); only many in a row mean a broken reader.
	for range maxEmptyReads {
		n, err := fr.r.Read(fr.buf[fr.tail:])
		fr.tail += n
		if n > 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}

// maxEmptyReads is how many reads in a row may return nothing and no error
// before fill gives up (as bufio does).
const maxEmptyReads = 100
