// Package english words counts for people: "1 cell", "3 cells".
package english

import "strconv"

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
