package procstat

import (
	"strings"
	"testing"
)

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("4242 (a) (b c) S 17 1 1 0 -1 4194560 100 0 0 0 250 30 7 3 20 0 9 0 12345 1000 100\n"))
	f.Add([]byte("1 (x"))
	f.Add([]byte("1 () R 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseStat(b)
		if err != nil {
			return
		}
		if !strings.Contains(string(b), "("+s.Comm+")") {
			t.Fatalf("comm %q is not a parenthesised field of %q", s.Comm, b)
		}
	})
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte("VmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\nThreads:\t5\nvoluntary_ctxt_switches:\t12\n"))
	f.Add([]byte("VmRSS:\t18446744073709551615 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseStatus(b)
		if err == nil && s.RSS%1024 != 0 {
			t.Fatalf("RSS %d from %q is not whole kB", s.RSS, b)
		}
	})
}
