package natsbus_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tcplab/tcplab/app/chat"
	"github.com/tcplab/tcplab/app/chat/natsbus"
)

// TestAcrossNodes: two tcplab nodes on one NATS server are one chat: room
// traffic, presence, /who, /rooms, private messages and nick claims span
// both, and no one gets a message twice or their own.
func TestAcrossNodes(t *testing.T) {
	ns := startNATS(t, natsbus.EmbeddedOptions{})
	n1 := startNode(t, testBusOptions(ns.URL()))
	n2 := startNode(t, testBusOptions(ns.URL()))

	a := dial(t, n1)
	if a.Name != "guest-1" {
		t.Errorf("first guest: %s", a.Name)
	}
	b := dial(t, n2)
	if b.Name != "guest-2" { // one counter for the whole bus
		t.Errorf("second guest, on the other node: %s", b.Name)
	}
	a.Next("JOIN lobby guest-2")
	a.Call("/nick alice", "OK nick alice")
	a.Name = "alice"
	b.Call("/nick alice", "ERR nick-taken alice")
	b.Call("/nick bob", "OK nick bob")
	b.Name = "bob"
	c := join(t, n2, "carol", "")
	a.Next("JOIN lobby guest-3")

	a.MustSend("hello from n1")
	b.Next("MSG lobby alice hello from n1")
	c.Next("MSG lobby alice hello from n1")
	b.MustSend("hello from n2")
	a.Next("MSG lobby bob hello from n2")
	c.Next("MSG lobby bob hello from n2")
	a.Quiet()
	b.Quiet()
	c.Quiet()

	b.Call("/who", "OK who alice bob carol")
	a.Call("/rooms", "OK rooms lobby:3")
	c.Call("/join dev", "OK join dev")
	a.Next("LEAVE lobby carol")
	a.Call("/rooms", "OK rooms dev:1 lobby:2")
	a.Call("/join dev", "OK join dev")
	c.Next("JOIN dev alice")
	c.Call("/who", "OK who alice carol")

	a.Call("/msg bob psst", "OK msg")
	b.Next("PRIV alice psst")
	a.Call("/msg nobody x", "ERR no-such-nick nobody")
	// Renames across nodes are covered by the conformance suite on fork,
	// where every client is a node of its own.

	st1, st2 := n1.net.Stats(), n2.net.Stats()
	if st1.Lost+st2.Lost+st1.Duplicates+st2.Duplicates+st1.BadEvents+st2.BadEvents != 0 {
		t.Errorf("stats: %+v, %+v", st1, st2)
	}
	if st1.Received == 0 || st2.Received == 0 {
		t.Errorf("nothing received across: %+v, %+v", st1, st2)
	}
}

// TestMessagesFitTheMaxPayload: a NATS server whose max payload is less
// than the chat's frame limit allows makes the chat's limit smaller: a
// message that NATS could not carry is refused to its sender with
// too-long (not sent to its own node's members only and refused by NATS
// as unavailable), and the longest message it can carry, room or private,
// to the longest nick, reaches the other node.
func TestMessagesFitTheMaxPayload(t *testing.T) {
	const maxPayload = 4096
	ns := startNATS(t, natsbus.EmbeddedOptions{MaxPayload: maxPayload})
	n1 := startNode(t, testBusOptions(ns.URL()))
	n2 := startNode(t, testBusOptions(ns.URL()))
	limit := n1.net.MaxMessage()
	if limit != maxPayload-natsbus.EventOverhead {
		t.Fatalf("MaxMessage %d, want the max payload %d less EventOverhead %d", limit, maxPayload, natsbus.EventOverhead)
	}
	long := strings.Repeat("b", chat.MaxNick)
	a := join(t, n1, "alice", "")
	b := join(t, n2, long, "")
	refused := func(cmd string, frameLen int) {
		t.Helper()
		a.MustSend(cmd)
		want := fmt.Sprintf("ERR too-long the message would make a %d-byte frame; the limit is %d", frameLen, limit)
		var got []string
		for _, f := range a.Sync() {
			if !isPresence(f) {
				got = append(got, f)
			}
		}
		if len(got) != 1 || got[0] != want {
			t.Errorf("a %d-byte frame: alice got %.100q, want %q", frameLen, got, want)
		}
	}

	msg := "MSG lobby alice "
	refused(strings.Repeat("x", limit+1-len(msg)), limit+1)
	refused(strings.Repeat("x", maxPayload), len(msg)+maxPayload) // NATS would refuse it
	text := strings.Repeat("y", limit-len(msg))
	a.MustSend(text)
	b.Next(msg + text)

	priv := "PRIV alice "
	refused("/msg "+long+" "+strings.Repeat("x", limit+1-len(priv)), limit+1)
	text = strings.Repeat("z", limit-len(priv))
	a.Call("/msg "+long+" "+text, "OK msg")
	b.Next(priv + text)
	if st := n1.net.Stats(); st.PublishErrors != 0 {
		t.Errorf("%d events refused by NATS", st.PublishErrors)
	}
}

// TestEmbeddedMaxPayload: an embedded server takes the max payload
// PayloadFor gives it, which carries every message of the chat it is
// for, and refuses one it cannot have.
func TestEmbeddedMaxPayload(t *testing.T) {
	for frame, want := range map[int]int{
		chat.DefaultMaxServerFrame: 1 << 20, // NATS's default: no smaller
		1 << 20:                    1<<20 + natsbus.EventOverhead,
		1 << 30:                    natsbus.MaxEmbeddedPayload,
	} {
		if got := natsbus.PayloadFor(frame); got != want {
			t.Errorf("PayloadFor(%d) = %d, want %d", frame, got, want)
		}
	}
	ns := startNATS(t, natsbus.EmbeddedOptions{MaxPayload: natsbus.PayloadFor(1 << 20)})
	n := startNode(t, testBusOptions(ns.URL()))
	if got := n.net.MaxMessage(); got != 1<<20 {
		t.Errorf("MaxMessage %d, want 1 MiB, the server frame limit it was made for", got)
	}
	if e, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{MaxPayload: natsbus.MaxEmbeddedPayload + 1}); err == nil {
		e.Shutdown()
		t.Error("an embedded server took a max payload over MaxEmbeddedPayload")
	}
}
