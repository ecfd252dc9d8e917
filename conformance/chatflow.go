package conformance

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcplab/tcplab/app/chat"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/internal/testkit"
)

// The chat's flow control and presence limit (docs/protocol.md, "Slow
// consumers" and "Presence").

// chatFlowCases are the chat cases of this file; chatCases lists them.
func chatFlowCases() []chatCase {
	return []chatCase{
		{name: "a receiver slower than its sender gets every message: the sender is slowed, not the receiver cut", run: chatFlowSlowReader, multi: true,
			opts: chat.Options{MaxFrame: 4096}, cfg: engine.Config{MaxPending: slowPending},
			procCfg: &engine.Config{MaxPending: slowPending, Workers: 1}},
		{name: "above the presence limit JOIN and LEAVE stop, across hubs; members are told; /who lists everyone", run: chatPresenceLimit, multi: true},
	}
}

// chatFlowSlowReader: a sender writes 300 messages of 2 KB at once into a
// room where a receiver, whose socket holds only about 100 KiB, reads them
// in batches of 16 with a pause after each. Without flow control the
// server would read the whole 600 KB at once and close the receiver as a
// slow consumer (its bound here is 64 KiB); with it the sender is paused
// whenever the receiver is over half its bound, and the receiver gets
// every message in order. Flow control works within a hub: on a model
// whose every connection is a hub of its own (a process model with no
// worker count), the sender's hub never sees the receiver, and the case
// is skipped.
func chatFlowSlowReader(t *testing.T, e *chatEnv) {
	m, err := engine.Lookup(e.model)
	if err != nil {
		t.Fatal(err)
	}
	if m.Child != nil && !slices.Contains(m.Options, "workers") {
		t.Skip("every connection is a hub of its own: flow control applies within a hub")
	}
	const total, batch = 300, 16
	sender := e.join(t, "sender", "flow")
	reader := testkit.Dialer{Stall: true}.Join(t, e.s.Addr().String(), e.kind, "reader", "flow")
	sender.Next("JOIN flow reader")
	msgs := make([]string, total)
	for i := range msgs {
		msgs[i] = floodText(i)
	}
	sent := make(chan error, 1)
	go func() { sent <- sender.Send(msgs...) }()
	for next := 0; next < total; {
		f, err := reader.Read()
		if err != nil {
			t.Fatalf("reader after %d messages: %v", next, err)
		}
		i := floodIndex(f, "flow", "sender")
		if i != next {
			t.Fatalf("reader after %d messages: got %q", next, testkit.Cut(f))
		}
		if next++; next%batch == 0 {
			time.Sleep(20 * time.Millisecond) // a slow reader, not a stopped one
		}
	}
	if err := <-sent; err != nil {
		t.Fatalf("sender: %v", err)
	}
	checkStats(t, e.s, "the sender's reading paused and no one overflowed", func(st engine.Stats) bool {
		return st.Stalls > 0 && st.StallTime > 0 && st.Overflows == 0
	})
}

// chatPresenceLimit runs a room with a presence limit of 2 over two hubs
// (servers on one bus), clients alternating between them: the third
// member turns presence off (everyone is told, no JOIN), the fourth is
// told on joining, /who still lists all four, leaves are silent until the
// room is back at 2 (everyone is told), and then LEAVE is sent again.
// Hubs learn each other's counts from the presence events, so every
// outcome here holds whichever hub learns what first.
func chatPresenceLimit(t *testing.T, e *chatEnv) {
	bus := chat.NewLocalNet()
	opts := chat.Options{Bus: bus.Join, PresenceLimit: 2}
	hubs := []*Server{e.start(t, opts), e.start(t, opts)}
	join := func(i int) *testkit.Client { return testkit.Join(t, hubs[i%2].Addr().String(), e.kind, "", "") }
	off, on := "NOTICE "+chat.NoticePresenceOff+" lobby ", "NOTICE "+chat.NoticePresenceOn+" lobby "
	a := join(0)
	b := join(1)
	a.Next("JOIN lobby " + b.Name)
	c := join(2) // the third: over the limit
	for _, m := range []*testkit.Client{a, b, c} {
		m.NextPrefix(off)
	}
	d := join(3) // told on joining
	d.NextPrefix(off)
	nicks := []string{a.Name, b.Name, c.Name, d.Name}
	slices.Sort(nicks)
	a.Call("/who", "OK who "+strings.Join(nicks, " "))
	for _, m := range []*testkit.Client{a, b, c, d} {
		m.Quiet()
	}

	d.MustSend("/quit")
	d.End("BYE quit") // 3 left: still over the limit, silent
	c.MustSend("/quit")
	c.End("BYE quit") // 2 left: presence is back on
	a.NextPrefix(on)
	b.NextPrefix(on)
	b.MustSend("/quit")
	b.End("BYE quit")
	a.Next("LEAVE lobby " + b.Name)
	a.Quiet()
}
