package engine_test

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"unicode"
)

var updateTypeDocs = flag.Bool("update-type-docs", false,
	"rewrite the doc comments of engine's aliases from internal/serving's types")

// mirrored are engine's aliases of internal/serving's types: godoc shows
// an alias without the fields of the type it names, so each alias's doc
// comment carries the type's doc and its exported definition, verbatim.
var mirrored = []struct{ file, name, from string }{
	{"config.go", "Config", "../internal/serving/config.go"},
	{"config.go", "FieldError", "../internal/serving/config.go"},
	{"stats.go", "Stats", "../internal/serving/stats.go"},
}

// TestAliasDocsMirrorTheirTypes keeps those doc comments in step with the
// types. After changing a type or its field docs in internal/serving, run
//
//	go test ./engine -run TestAliasDocsMirrorTheirTypes -update-type-docs
func TestAliasDocsMirrorTheirTypes(t *testing.T) {
	for _, m := range mirrored {
		src, err := os.ReadFile(m.from)
		if err != nil {
			t.Fatal(err)
		}
		want, err := aliasDoc(string(src), m.name)
		if err != nil {
			t.Fatalf("%s: %v", m.from, err)
		}
		b, err := os.ReadFile(m.file)
		if err != nil {
			t.Fatal(err)
		}
		file := string(b)
		decl := "type " + m.name + " = serving." + m.name + "\n"
		end := strings.Index(file, decl)
		if end < 0 {
			t.Fatalf("%s: no %q", m.file, strings.TrimSpace(decl))
		}
		start := commentStart(file, end)
		if got := file[start:end]; got != want {
			if !*updateTypeDocs {
				t.Errorf("%s: the doc comment of %s does not mirror serving.%s; run\n\tgo test ./engine -run %s -update-type-docs",
					m.file, m.name, m.name, t.Name())
				continue
			}
			if err := os.WriteFile(m.file, []byte(file[:start]+want+file[end:]), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// commentStart returns where the comment lines ending at end begin.
func commentStart(file string, end int) int {
	start := end
	for start > 0 {
		prev := strings.LastIndexByte(file[:start-1], '\n') + 1
		if !strings.HasPrefix(file[prev:start], "//") {
			break
		}
		start = prev
	}
	return start
}

// aliasDoc returns the doc comment for engine's alias of the type name
// declared in src: the type's own doc comment, then its declaration
// without unexported fields, as a code block.
func aliasDoc(src, name string) (string, error) {
	head := "type " + name + " struct {\n"
	at := strings.Index(src, "\n"+head)
	if at < 0 {
		return "", fmt.Errorf("no struct type %s", name)
	}
	doc := src[commentStart(src, at+1) : at+1]
	body := src[at+1+len(head):]
	end := strings.Index(body, "\n}\n")
	if end < 0 {
		return "", fmt.Errorf("type %s does not end", name)
	}
	var b strings.Builder
	b.WriteString(doc)
	b.WriteString("//\n// It is defined in internal/serving, which the engine shares with\n")
	b.WriteString("// the event loops of internal/reactor:\n//\n")
	b.WriteString("//\t" + head)
	var comment []string
	for line := range strings.Lines(body[:end+1]) {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "//"):
			comment = append(comment, line)
			continue
		case trimmed != "" && unicode.IsLower(rune(trimmed[0])):
			comment = nil // an unexported field, and its comment
			continue
		}
		for _, l := range append(comment, line) {
			if strings.TrimSpace(l) == "" {
				if !strings.HasSuffix(b.String(), "//\n") { // one blank line for two around a dropped field
					b.WriteString("//\n")
				}
			} else {
				b.WriteString("//\t" + l)
			}
		}
		comment = nil
	}
	b.WriteString("//\t}\n")
	return b.String(), nil
}
