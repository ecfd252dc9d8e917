package report

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// refPattern finds every place HTML or inline CSS can name another
// resource: src, href, srcset, poster, data and action attributes, and
// CSS url() and @import.
var refPattern = regexp.MustCompile(`(?i)(?:\b(?:src|href|srcset|poster|data|action)\s*=\s*["']?([^"'\s>]+)|url\(\s*["']?([^"')]+)|@import\s+["']([^"']+))`)

// Offline checks that dir's index.html references only files inside dir
// that exist: no URL with a scheme or host, no absolute path, no "..".
func Offline(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, HTMLFile))
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	refs := refPattern.FindAllStringSubmatch(string(b), -1)
	if len(refs) == 0 {
		return fmt.Errorf("report: %s references no files", HTMLFile)
	}
	for _, m := range refs {
		ref := m[1] + m[2] + m[3]
		u, err := url.Parse(ref)
		if err != nil {
			return fmt.Errorf("report: %s: reference %q: %w", HTMLFile, ref, err)
		}
		if u.Scheme != "" || u.Host != "" || strings.HasPrefix(u.Path, "/") || strings.Contains(u.Path, "..") {
			return fmt.Errorf("report: %s: reference %q is not a file beside it", HTMLFile, ref)
		}
		if _, err := os.Stat(filepath.Join(dir, u.Path)); err != nil {
			return fmt.Errorf("report: %s: reference %q: %w", HTMLFile, ref, err)
		}
	}
	return nil
}
