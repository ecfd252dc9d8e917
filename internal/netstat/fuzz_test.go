package netstat

import "testing"

func FuzzParse(f *testing.F) {
	f.Add([]byte(sample), "TcpExt")
	f.Add([]byte("TcpExt: a\nTcpExt: 18446744073709551616\n"), "TcpExt")
	f.Fuzz(func(t *testing.T, b []byte, section string) {
		m, err := Parse(b, section)
		if err == nil && m == nil {
			t.Fatal("nil map without an error")
		}
		ParseListen(b)
	})
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
