package chat

import (
	"strings"
	"testing"

	"github.com/tcplab/tcplab/internal/mdtable"
)

// protocolDoc is the chat protocol's doc, whose tables the tests pin to
// the code.
const protocolDoc = "../../docs/protocol.md"

// TestDocsListEveryErrorCode pins docs/protocol.md to the code: the error
// code table lists exactly ErrorCodes, in order.
func TestDocsListEveryErrorCode(t *testing.T) {
	mdtable.Lists(t, protocolDoc, "## Error codes", ErrorCodes())
}

func TestDocsListEveryByeReason(t *testing.T) {
	mdtable.Lists(t, protocolDoc, "## BYE reasons", []string{ByeQuit, ByeShuttingDown, ByeIdleTimeout, ByeFrameTimeout,
		CodeSlowConsumer, CodeServerFull, CodeTooManyConns, CodeConnRate, CodeFrameTooLarge, CodeBadFrame, CodeUnavailable, ByeError})
}

// TestDocsListEveryCommand checks that each command in the docs' table
// parses as documented and that the parser knows no other.
func TestDocsListEveryCommand(t *testing.T) {
	var words []string
	for _, k := range mdtable.MustKeys(t, protocolDoc, "## Client to server") {
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
	mdtable.Lists(t, protocolDoc, "## Limits", []string{"--framing", "--max-frame", "--max-pending", "--max-conns", "--msg-rate", "--msg-burst",
		"--idle-timeout", "--presence-limit", "--frame-timeout", "--max-conns-per-ip", "--conn-rate"})
}
