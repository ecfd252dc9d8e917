package natsbus

import (
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcplab/tcplab/app/chat"
	"github.com/tcplab/tcplab/internal/testkit"
)

// countNode counts the room events delivered to it, and closes all once
// it has counted want.
type countNode struct {
	n    atomic.Int64
	want int64
	all  chan struct{}
}

func (c *countNode) Deliver(chat.Event) {
	if c.n.Add(1) == c.want {
		close(c.all)
	}
}
func (c *countNode) DeliverPrivate(chat.Event) bool      { return false }
func (c *countNode) Members(string) []string             { return nil }
func (c *countNode) Rooms() map[string]int               { return nil }
func (c *countNode) Notice(room string, words ...string) {}

// BenchmarkRoomAcrossNodes measures the bus alone: one node publishes room
// messages (64-byte text) through an embedded NATS server to another node
// that delivers them (to a counter, not to sockets). A window of 20,000
// events in flight keeps the receiver's queue from overflowing.
//
//	go test ./app/chat/natsbus -run '^$' -bench RoomAcrossNodes -benchtime 200000x
func BenchmarkRoomAcrossNodes(b *testing.B) {
	ns, err := StartEmbedded(EmbeddedOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Shutdown()
	join := func(node chat.Node) chat.Bus {
		n, err := New(Options{URLs: ns.URL(), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		l, err := n.Join(node)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { l.Close() })
		return l
	}
	recv := &countNode{want: int64(b.N), all: make(chan struct{})}
	from, to := join(&countNode{}), join(recv)
	for _, l := range []chat.Bus{from, to} {
		if err := l.Subscribe("bench"); err != nil {
			b.Fatal(err)
		}
	}
	ev := chat.Event{Kind: chat.EventMsg, Room: "bench", Nick: "sender", Text: make([]byte, 64), Origin: chat.Origin{Node: 1, Conn: 1}}
	for i := range ev.Text {
		ev.Text[i] = 'x'
	}
	const window = 20000
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		for int64(i)-recv.n.Load() > window {
			runtime.Gosched()
		}
		if err := from.Publish(ev); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-recv.all:
	case <-time.After(testkit.Bound):
		b.Fatalf("delivered %d of %d", recv.n.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
