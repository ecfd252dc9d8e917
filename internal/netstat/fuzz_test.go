package netstat

import (
	"bytes"
	"strconv"
	"testing"
)

// FuzzParse checks Parse's result against its input: every counter it
// returns is a name of the section's first line, with the value in the
// same place of its second line, and ParseListen agrees with Parse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(sample), "TcpExt")
	f.Add([]byte("TcpExt: a\nTcpExt: 18446744073709551616\n"), "TcpExt")
	f.Add([]byte("TcpExt: a b\nTcpExt: 1\n"), "TcpExt")
	f.Add([]byte("IpExt: x\nTcpExt: ListenOverflows ListenDrops\nTcpExt: 3 4\n"), "TcpExt")
	f.Fuzz(func(t *testing.T, b []byte, section string) {
		m, err := Parse(b, section)
		if err == nil {
			if m == nil {
				t.Fatal("nil map without an error")
			}
			var names, values [][]byte
			prefix := []byte(section + ":")
			for line := range bytes.Lines(b) {
				if rest, ok := bytes.CutPrefix(line, prefix); ok {
					if names == nil {
						names = bytes.Fields(rest)
					} else {
						values = bytes.Fields(rest)
						break
					}
				}
			}
			if len(m) > len(names) || len(names) != len(values) {
				t.Fatalf("%d counters from %d names and %d values", len(m), len(names), len(values))
			}
			for i, name := range names {
				v, ok := m[string(name)]
				if !ok {
					t.Fatalf("name %q missing from the result", name)
				}
				if want, _ := strconv.ParseUint(string(values[i]), 10, 64); v != want && !duplicate(names, i) {
					t.Fatalf("%s = %d, the input says %s", name, v, values[i])
				}
			}
		}
		l, lerr := ParseListen(b)
		ext, eerr := Parse(b, "TcpExt")
		if eerr == nil && lerr == nil && (l.Overflows != ext["ListenOverflows"] || l.Drops != ext["ListenDrops"]) {
			t.Fatalf("ParseListen %+v disagrees with Parse %v", l, ext)
		}
		if eerr != nil && lerr == nil {
			t.Fatalf("ParseListen succeeded where Parse failed: %v", eerr)
		}
	})
}

// duplicate reports whether names[i] appears again later (then the later
// value wins).
func duplicate(names [][]byte, i int) bool {
	for _, n := range names[i+1:] {
		if bytes.Equal(n, names[i]) {
			return true
		}
	}
	return false
}

func FuzzParsePortRange(f *testing.F) {
	f.Add("32768 60999")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParsePortRange(s)
		if err == nil && (r.Size() < 1 || r.Size() > 65535) {
			t.Fatalf("%q gave size %d", s, r.Size())
		}
	})
}
