package serving

import (
	"testing"
)

// FuzzRecordScan feeds a byte stream to the TLS record follower in pieces
// and checks it against a plain parse of the whole stream: after every
// piece, a record is incomplete exactly when the parse says so, the
// records it saw end are the ones that did end in that piece, and the
// header it reports for an incomplete record is that record's.
func FuzzRecordScan(f *testing.F) {
	f.Add([]byte{23, 3, 3, 0, 2, 'h', 'i', 23, 3, 3, 0, 0}, uint8(3))
	f.Add([]byte{22, 3, 1, 0}, uint8(1))
	f.Add([]byte{23, 3, 3, 0xff, 0xff, 1, 2, 3}, uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		// ends[i] is true if a record ends after byte i.
		ends := make([]bool, len(data))
		pos := 0
		for pos+RecordHeaderLen <= len(data) {
			n := int(data[pos+3])<<8 | int(data[pos+4])
			if pos+RecordHeaderLen+n > len(data) {
				break
			}
			pos += RecordHeaderLen + n
			ends[pos-1] = true
		}
		var r Records
		size := int(step%16) + 1
		for off := 0; off < len(data); off += size {
			piece := data[off:min(off+size, len(data))]
			completed := r.Scan(piece)
			want := false
			for i := off; i < off+len(piece); i++ {
				want = want || ends[i]
			}
			if completed != want {
				t.Fatalf("bytes %d..%d: completed %v, want %v", off, off+len(piece), completed, want)
			}
			done := off + len(piece)
			last := boundaryBefore(ends, done)
			wantPartial := done > 0 && !ends[done-1] && done > last
			if r.Partial() != wantPartial {
				t.Fatalf("after %d bytes: incomplete %v, want %v", done, r.Partial(), wantPartial)
			}
			typ, length, ok := r.Header()
			wantOK := wantPartial && done-last >= RecordHeaderLen
			if ok != wantOK {
				t.Fatalf("after %d bytes: header known %v, want %v", done, ok, wantOK)
			}
			if ok && (typ != data[last] || length != int(data[last+3])<<8|int(data[last+4])) {
				t.Fatalf("after %d bytes: header %d/%d, want the record's at %d", done, typ, length, last)
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
