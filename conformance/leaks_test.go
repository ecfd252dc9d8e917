package conformance

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryTestedPackageChecksForLeaks walks the module: every package with
// tests must check them for leaked goroutines, with goleak in its TestMain
// (directly, or through Main).
func TestEveryTestedPackageChecksForLeaks(t *testing.T) {
	checked := map[string]bool{}
	tested := map[string]bool{}
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		dir := filepath.Dir(path)
		tested[dir] = true
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		src := string(b)
		if strings.Contains(src, "func TestMain(") &&
			(strings.Contains(src, "goleak.VerifyTestMain(") || strings.Contains(src, "conformance.Main(") || strings.Contains(src, "{ Main(m) }")) {
			checked[dir] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(tested) < 10 {
		t.Fatalf("found only %d tested packages: is the walk rooted at the module?", len(tested))
	}
	for dir := range tested {
		if !checked[dir] {
			t.Errorf("package %s has tests but no goleak check in TestMain", dir)
		}
	}
}
