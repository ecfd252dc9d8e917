package english

import (
	"strings"
	"testing"
	"unicode/utf8"
)

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

func TestCutKeepsUTF8AndMarksTheCut(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 64, ""},
		{"short", 64, "short"},
		{"a\xffb", 64, "a?b"},
		{strings.Repeat("x", 64), 64, strings.Repeat("x", 64)},
		{strings.Repeat("x", 65), 64, strings.Repeat("x", 61) + "..."},
		// 90 bytes of 3-byte characters: 61 bytes would split the 21st.
		{strings.Repeat("日", 30), 64, strings.Repeat("日", 20) + "..."},
		{strings.Repeat("é", 100), 64, strings.Repeat("é", 30) + "..."},
	} {
		got := Cut([]byte(c.in), c.n)
		if got != c.want || !utf8.ValidString(got) || len(got) > c.n {
			t.Errorf("Cut(%q, %d) = %q (%d bytes), want %q", c.in, c.n, got, len(got), c.want)
		}
	}
}

// TestQuoteMasksControlCharacters: what Cut keeps, with every control
// character, an escape sequence's ESC among them, shown as "?".
func TestQuoteMasksControlCharacters(t *testing.T) {
	for in, want := range map[string]string{
		"plain":            "plain",
		"\x1b[2Jcleared":   "?[2Jcleared",
		"tab\tnl\ndel\x7f": "tab?nl?del?",
		"c1\u009b31m":      "c1?31m",
		"a\xffb":           "a?b",
	} {
		if got := Quote([]byte(in), 64); got != want {
			t.Errorf("Quote(%q) = %q, want %q", in, got, want)
		}
	}
}
