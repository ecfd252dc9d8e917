package natsbus_test

import (
	"testing"

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
	if a.nick != "guest-1" {
		t.Errorf("first guest: %s", a.nick)
	}
	b := dial(t, n2)
	if b.nick != "guest-2" { // one counter for the whole bus
		t.Errorf("second guest, on the other node: %s", b.nick)
	}
	a.expect("JOIN lobby guest-2")
	a.call("/nick alice", "OK nick alice")
	a.nick = "alice"
	b.call("/nick alice", "ERR nick-taken alice")
	b.call("/nick bob", "OK nick bob")
	b.nick = "bob"
	c := join(t, n2, "carol", "")
	a.expect("JOIN lobby guest-3")

	a.send("hello from n1")
	b.expect("MSG lobby alice hello from n1")
	c.expect("MSG lobby alice hello from n1")
	b.send("hello from n2")
	a.expect("MSG lobby bob hello from n2")
	c.expect("MSG lobby bob hello from n2")
	a.quiet()
	b.quiet()
	c.quiet()

	b.call("/who", "OK who alice bob carol")
	a.call("/rooms", "OK rooms lobby:3")
	c.call("/join dev", "OK join dev")
	a.expect("LEAVE lobby carol")
	a.call("/rooms", "OK rooms dev:1 lobby:2")
	a.call("/join dev", "OK join dev")
	c.expect("JOIN dev alice")
	c.call("/who", "OK who alice carol")

	a.call("/msg bob psst", "OK msg")
	b.expect("PRIV alice psst")
	a.call("/msg nobody x", "ERR no-such-nick nobody")
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
