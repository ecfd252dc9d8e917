package cpupin

import (
	"slices"
	"testing"
)

// FuzzParseList checks that a list that parses formats back to the same
// CPUs.
func FuzzParseList(f *testing.F) {
	for _, s := range []string{"0", "0-3", "3,0-1", "1-1023", "0,,1", "9-2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cpus, err := ParseList(s)
		if err != nil {
			return
		}
		again, err := ParseList(FormatList(cpus))
		if err != nil || !slices.Equal(again, cpus) {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, cpus, FormatList(cpus), again, err)
		}
	})
}
