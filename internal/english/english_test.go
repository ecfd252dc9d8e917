package english

import "testing"

func TestCount(t *testing.T) {
	for _, c := range []struct {
		n          int
		noun, want string
	}{
		{0, "cell", "0 cells"},
		{1, "cell", "1 cell"},
		{2, "cell", "2 cells"},
		{1, "client count", "1 client count"},
		{-1, "model", "-1 models"},
	} {
		if got := Count(c.n, c.noun); got != c.want {
			t.Errorf("Count(%d, %q) = %q, want %q", c.n, c.noun, got, c.want)
		}
	}
}
