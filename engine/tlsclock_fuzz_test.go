package engine

import (
	"testing"
)

// FuzzRecordScan feeds a byte stream to the TLS record follower in pieces
// and checks it against a plain parse of the whole stream: after every
// piece, a record is incomplete exactly when the parse says so, and the
// records it saw end are the ones that did end in that piece.
func FuzzRecordScan(f *testing.F) {
	f.Add([]byte{23, 3, 3, 0, 2, 'h', 'i', 23, 3, 3, 0, 0}, uint8(3))
	f.Add([]byte{22, 3, 1, 0}, uint8(1))
	f.Add([]byte{23, 3, 3, 0xff, 0xff, 1, 2, 3}, uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		// ends[i] is true if a record ends after byte i.
		ends := make([]bool, len(data))
		pos := 0
		for pos+5 <= len(data) {
			n := int(data[pos+3])<<8 | int(data[pos+4])
			if pos+5+n > len(data) {
				break
			}
			pos += 5 + n
			ends[pos-1] = true
		}
		c := &recordConn{}
		size := int(step%16) + 1
		for off := 0; off < len(data); off += size {
			piece := data[off:min(off+size, len(data))]
			completed := c.scan(piece)
			want := false
			for i := off; i < off+len(piece); i++ {
				want = want || ends[i]
			}
			if completed != want {
				t.Fatalf("bytes %d..%d: completed %v, want %v", off, off+len(piece), completed, want)
			}
			done := off + len(piece)
			partial := c.hdrN > 0 || c.left > 0
			wantPartial := done > 0 && !ends[done-1] && done > boundaryBefore(ends, done)
			if partial != wantPartial {
				t.Fatalf("after %d bytes: incomplete %v, want %v", done, partial, wantPartial)
			}
		}
	})
}

// boundaryBefore returns the offset just after the last record that ended
// within the first n bytes (0 if none).
func boundaryBefore(ends []bool, n int) int {
	for i := n - 1; i >= 0; i-- {
		if ends[i] {
			return i + 1
		}
	}
	return 0
}
