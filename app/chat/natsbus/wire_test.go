package natsbus

import (
	"bytes"
	"errors"
	"testing"

	"github.com/tcplab/tcplab/app/chat"
)

func TestWireRoundTrip(t *testing.T) {
	events := []chat.Event{
		{Kind: chat.EventMsg, Room: "lobby", Nick: "alice", Text: []byte("héllo  there"), Origin: chat.Origin{Node: 1<<63 + 5, Conn: 7}},
		{Kind: chat.EventJoin, Room: "dev", Nick: "bob", Members: 1234, Origin: chat.Origin{Node: 2, Conn: 1}},
		{Kind: chat.EventLeave, Room: "dev", Nick: "bob"},
		{Kind: chat.EventCount, Room: "dev", Members: 7, Origin: chat.Origin{Node: 3}},
		{Kind: chat.EventPriv, To: "carol", Nick: "alice", Text: []byte("psst")},
	}
	for _, ev := range events {
		pos := position{epoch: 42, seq: 9}
		p := appendEvent(nil, &ev, pos)
		got, gotPos, err := decodeEvent(p)
		if err != nil {
			t.Fatalf("%+v: %v", ev, err)
		}
		if got.Kind != ev.Kind || got.Room != ev.Room || got.To != ev.To || got.Nick != ev.Nick ||
			!bytes.Equal(got.Text, ev.Text) || got.Members != ev.Members || got.Origin != ev.Origin || gotPos != pos {
			t.Errorf("round trip: %+v at %+v became %+v at %+v", ev, pos, got, gotPos)
		}
	}
}

func TestWireRejects(t *testing.T) {
	good := appendEvent(nil, &chat.Event{Kind: chat.EventMsg, Room: "r", Nick: "n", Text: []byte("t")}, position{})
	bad := map[string][]byte{
		"empty":          nil,
		"short":          good[:headerLen],
		"version":        append([]byte{9}, good[1:]...),
		"kind":           append([]byte{wireVersion, 99}, good[2:]...),
		"nick too long":  append(append([]byte(nil), good[:headerLen]...), 200, 'n'),
		"bad room":       appendEvent(nil, &chat.Event{Kind: chat.EventMsg, Room: "a.b", Nick: "n", Text: []byte("t")}, position{}),
		"bad nick":       appendEvent(nil, &chat.Event{Kind: chat.EventMsg, Room: "r", Nick: "n n", Text: []byte("t")}, position{}),
		"join with text": append(appendEvent(nil, &chat.Event{Kind: chat.EventJoin, Room: "r", Nick: "n"}, position{}), 't'),
		"count of 0":     append(appendEvent(nil, &chat.Event{Kind: chat.EventLeave, Room: "r", Nick: "n"}, position{}), '0'),
		"count, a nick":  appendEvent(nil, &chat.Event{Kind: chat.EventCount, Room: "r", Nick: "n", Members: 2}, position{}),
		"join, no nick":  appendEvent(nil, &chat.Event{Kind: chat.EventJoin, Room: "r", Members: 2}, position{}),
		"count too big":  appendEvent(nil, &chat.Event{Kind: chat.EventJoin, Room: "r", Nick: "n", Members: 1 << 40}, position{}),
		"msg no text":    appendEvent(nil, &chat.Event{Kind: chat.EventMsg, Room: "r", Nick: "n"}, position{}),
		"bad utf8":       appendEvent(nil, &chat.Event{Kind: chat.EventPriv, To: "r", Nick: "n", Text: []byte{0xff}}, position{}),
		"control":        appendEvent(nil, &chat.Event{Kind: chat.EventMsg, Room: "r", Nick: "n", Text: []byte("\x1b[2J")}, position{}),
	}
	for name, p := range bad {
		if _, _, err := decodeEvent(p); !errors.Is(err, errBadEvent) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzDecodeEvent: any payload decodes or is refused, never panics, and
// what decodes encodes back to the same bytes.
func FuzzDecodeEvent(f *testing.F) {
	f.Add(appendEvent(nil, &chat.Event{Kind: chat.EventMsg, Room: "lobby", Nick: "alice", Text: []byte("hi")}, position{epoch: 1, seq: 2}))
	f.Add(appendEvent(nil, &chat.Event{Kind: chat.EventPriv, To: "bob", Nick: "alice", Text: []byte("x")}, position{}))
	f.Add(appendEvent(nil, &chat.Event{Kind: chat.EventLeave, Room: "r", Nick: "n"}, position{}))
	f.Add(appendEvent(nil, &chat.Event{Kind: chat.EventJoin, Room: "r", Nick: "n", Members: 1001}, position{}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		ev, pos, err := decodeEvent(p)
		if err != nil {
			return
		}
		if again := appendEvent(nil, &ev, pos); !bytes.Equal(again, p) {
			t.Fatalf("%x decoded to %+v, which encodes to %x", p, ev, again)
		}
	})
}
