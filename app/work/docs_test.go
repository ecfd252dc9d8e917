package work

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/tcplab/tcplab/internal/mdtable"
)

// protocolDoc is the work protocol's doc, whose tables the tests pin to
// the code.
const protocolDoc = "../../docs/work-protocol.md"

func TestDocsListEveryErrorCode(t *testing.T) {
	mdtable.Lists(t, protocolDoc, "## Error codes", ErrorCodes())
}

// TestDocsListEveryRequest checks that each request in the docs' table
// parses, with numbers and text filled in, as the verb it names, and that
// the table lists all three.
func TestDocsListEveryRequest(t *testing.T) {
	fill := strings.NewReplacer("N", "3", "US", "10", "TEXT", "some text")
	var verbs []Verb
	for _, k := range mdtable.MustKeys(t, protocolDoc, "## Requests") {
		r, err := ParseRequest([]byte(fill.Replace(k)), testLimits)
		if err != nil {
			t.Errorf("docs list %q: %v", k, err)
			continue
		}
		verbs = append(verbs, r.Verb)
	}
	if !slices.Equal(verbs, []Verb{VerbSha, VerbSleep, VerbEcho}) {
		t.Errorf("docs list verbs %v", verbs)
	}
}

func TestDocsLimitsAndExample(t *testing.T) {
	d := DefaultOptions()
	if d.MaxSha != 1000000 || d.MaxSleep.String() != "1s" || d.MaxFrame != 1<<20 {
		t.Errorf("defaults %+v differ from the Limits table", d)
	}
	mdtable.Lists(t, protocolDoc, "## Limits", []string{"--max-sha", "--max-sleep", "--max-frame", "--max-pending"})
	doc, err := os.ReadFile(protocolDoc)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := ParseRequest([]byte("sha 1 abc"), testLimits)
	if want := "`" + string(AppendReply(nil, r)) + "`"; !strings.Contains(string(doc), want) {
		t.Errorf("docs do not show the reply to sha 1 abc, %s", want)
	}
}
