package chat

import (
	"slices"
	"strings"
	"testing"

	"github.com/tcplab/tcplab/internal/mdtable"
)

// tableKeys returns the first column (the text in backquotes) of the table
// under the heading in docs/protocol.md.
func tableKeys(t *testing.T, heading string) []string {
	t.Helper()
	keys, err := mdtable.Keys("../../docs/protocol.md", heading)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestDocsListEveryErrorCode pins docs/protocol.md to the code: the error
// code table lists exactly ErrorCodes, in order.
func TestDocsListEveryErrorCode(t *testing.T) {
	if got := tableKeys(t, "## Error codes"); !slices.Equal(got, ErrorCodes()) {
		t.Errorf("docs list codes %q\ncode has %q", got, ErrorCodes())
	}
}

func TestDocsListEveryByeReason(t *testing.T) {
	want := []string{ByeQuit, ByeShuttingDown, ByeIdleTimeout, ByeFrameTimeout, CodeSlowConsumer, CodeServerFull,
		CodeTooManyConns, CodeConnRate, CodeFrameTooLarge, CodeBadFrame, CodeUnavailable, ByeError}
	if got := tableKeys(t, "## BYE reasons"); !slices.Equal(got, want) {
		t.Errorf("docs list BYE reasons %q, want %q", got, want)
	}
}

// TestDocsListEveryCommand checks that each command in the docs' table
// parses as documented and that the parser knows no other.
func TestDocsListEveryCommand(t *testing.T) {
	var words []string
	for _, k := range tableKeys(t, "## Client to server") {
		if !strings.HasPrefix(k, "/") || strings.HasPrefix(k, "//") {
			continue
		}
		word, _, _ := strings.Cut(k[1:], " ")
		words = append(words, word)
		if _, _, ok := lookupCommand([]byte(word)); !ok {
			t.Errorf("docs list /%s; the parser does not know it", word)
		}
	}
	if len(words) != len(Commands()) {
		t.Errorf("docs list %d commands (%q), the parser knows %d", len(words), words, len(Commands()))
	}
}

func TestDocsDefaults(t *testing.T) {
	d := DefaultOptions()
	if d.MaxFrame != 1<<20 || d.MaxConns != 10000 || d.MsgRate != 100 || d.MsgBurst != 200 || d.IdleTimeout.String() != "5m0s" || d.Framing != "length" || d.PresenceLimit != 1000 {
		t.Errorf("defaults %+v differ from the Limits table", d)
	}
	if got := tableKeys(t, "## Limits"); !slices.Equal(got, []string{"--framing", "--max-frame", "--max-pending", "--max-conns", "--msg-rate", "--msg-burst", "--idle-timeout",
		"--presence-limit", "--frame-timeout", "--max-conns-per-ip", "--conn-rate"}) {
		t.Errorf("limits table lists %q", got)
	}
}
