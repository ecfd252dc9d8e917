package mdtable

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestKeysReadsTheFirstColumnUnderTheHeading(t *testing.T) {
	path := filepath.Join(t.TempDir(), "doc.md")
	doc := "# T\n\n## A\n\n| k | v |\n|---|---|\n| `one` | 1 |\n| two | 2 |\n| `three x` | 3 |\n\n## B\n\n| `four` | 4 |\n"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := Keys(path, "## A"); err != nil || !slices.Equal(got, []string{"one", "three x"}) {
		t.Errorf("## A: %q, %v", got, err)
	}
	if got, err := Keys(path, "## B"); err != nil || !slices.Equal(got, []string{"four"}) {
		t.Errorf("## B: %q, %v", got, err)
	}
	if _, err := Keys(path, "## C"); err == nil {
		t.Error("a missing heading gave no error")
	}
	Lists(t, path, "## A", []string{"one", "three x"})
	var r recorder
	Lists(&r, path, "## B", []string{"four", "five"})
	if r.errors != 1 {
		t.Errorf("Lists of a table missing a row reported %d errors, want 1", r.errors)
	}
}

// recorder is a testing.TB that counts the errors reported to it.
type recorder struct {
	testing.TB
	errors int
}

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.errors++ }
func (r *recorder) Fatal(args ...any)     { panic(fmt.Sprint(args...)) }
