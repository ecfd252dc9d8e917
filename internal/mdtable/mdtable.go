// Package mdtable reads the tables of the project's Markdown docs, so that
// tests can pin a doc's tables to the code.
package mdtable

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var firstCell = regexp.MustCompile("(?m)^\\| `([^`]+)`")

// Keys returns the first column of the rows, where it is text in
// backquotes, of the tables under heading (a whole line such as "## Error
// codes") in the Markdown file at path, up to the next heading.
func Keys(path, heading string) ([]string, error) {
	doc, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	_, section, ok := strings.Cut(string(doc), "\n"+heading+"\n")
	if !ok {
		return nil, fmt.Errorf("%s has no %q", path, heading)
	}
	if i := strings.Index(section, "\n#"); i >= 0 {
		section = section[:i]
	}
	var keys []string
	for _, m := range firstCell.FindAllStringSubmatch(section, -1) {
		keys = append(keys, m[1])
	}
	return keys, nil
}

// MustKeys is Keys for a test: it stops t on an error.
func MustKeys(t testing.TB, path, heading string) []string {
	t.Helper()
	keys, err := Keys(path, heading)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// Lists pins a table to the code: it fails t unless the first column of
// the tables under heading in the file at path is want, in order.
func Lists(t testing.TB, path, heading string, want []string) {
	t.Helper()
	if got := MustKeys(t, path, heading); !slices.Equal(got, want) {
		t.Errorf("%s, %s: the table lists %q\nwant %q", path, heading, got, want)
	}
}
