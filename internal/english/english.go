// Package english words counts for people ("1 cell", "3 cells") and cuts
// what a person quoted down to a short, valid excerpt.
package english

import (
	"bytes"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Count returns n and noun, the noun in the plural unless n is 1: "1
// model", "0 models", "12 client counts". noun is the singular of a noun
// whose plural adds "s".
func Count(n int, noun string) string {
	s := strconv.Itoa(n) + " " + noun
	if n != 1 {
		s += "s"
	}
	return s
}

// Noun returns one when n is 1 and many otherwise: for nouns whose plural
// is not the singular plus "s" ("process", "processes").
func Noun(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Cut returns b as valid UTF-8 (invalid bytes become "?") of at most n
// bytes: if b is longer, it is cut on a character boundary and ends with
// "...". n is at least len("...").
func Cut(b []byte, n int) string {
	// Only a prefix can show: copy no more than one (b may be a MiB).
	// Four bytes per shown byte covers any UTF-8 the prefix keeps; a run
	// of invalid bytes longer than that shows as "?" all the same.
	b = bytes.ToValidUTF8(b[:min(len(b), 4*n)], []byte("?"))
	if len(b) <= n {
		return string(b)
	}
	i := n - len("...")
	for i > 0 && !utf8.RuneStart(b[i]) {
		i--
	}
	return string(b[:i]) + "..."
}

// Quote is Cut for a detail that quotes a peer's bytes back to it: a
// control character (C0, DEL, C1) also becomes "?", so that the quote
// carries no escape sequence to the peer's terminal.
func Quote(b []byte, n int) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) {
			return '?'
		}
		return r
	}, Cut(b, n))
}
