package natsbus

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tcplab/tcplab/app/chat"
)

// TestDocsListEveryNotice pins docs/protocol.md's notices table to the
// chat's presence notices and NoticeKinds.
func TestDocsListEveryNotice(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## Notices\n")
	if !ok {
		t.Fatal("docs/protocol.md has no Notices section")
	}
	section, _, _ = strings.Cut(section, "\n#")
	var kinds []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([^`]+)`").FindAllStringSubmatch(section, -1) {
		kinds = append(kinds, m[1])
	}
	want := append([]string{chat.NoticePresenceOff, chat.NoticePresenceOn}, NoticeKinds()...)
	if !slices.Equal(kinds, want) {
		t.Errorf("docs list notices %q, code has %q", kinds, want)
	}
}
