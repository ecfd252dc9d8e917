package chat

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
)

// recorder is a Node that records what a bus hands it. It stands for a
// hub; the hub's own behaviour over real sockets is in the conformance
// suite.
type recorder struct {
	mu      sync.Mutex
	got     []string
	nicks   map[string]bool
	members map[string][]string
}

func (r *recorder) Deliver(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, ev.Room+":"+ev.Nick+":"+string(ev.Text))
}

func (r *recorder) DeliverPrivate(ev Event) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.nicks[ev.To] {
		return false
	}
	r.got = append(r.got, "priv:"+ev.To+":"+string(ev.Text))
	return true
}

func (r *recorder) Members(room string) []string { return r.members[room] }

func (r *recorder) Rooms() map[string]int {
	out := map[string]int{}
	for room, m := range r.members {
		out[room] = len(m)
	}
	return out
}

func (r *recorder) Notice(room string, words ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, "notice:"+room+":"+strings.Join(words, " "))
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

func TestLocalNet(t *testing.T) {
	net := NewLocalNet()
	a := &recorder{nicks: map[string]bool{"alice": true}, members: map[string][]string{"dev": {"alice"}}}
	b := &recorder{nicks: map[string]bool{"bob": true}, members: map[string][]string{"dev": {"bob"}, "ops": {"bob"}}}
	ba, _ := net.Join(a)
	bb, _ := net.Join(b)

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(ba.Subscribe("dev"))
	must(bb.Subscribe("dev"))
	must(bb.Subscribe("ops"))

	// A room event reaches each subscribed node once, the publisher's too.
	must(ba.Publish(Event{Kind: EventMsg, Room: "dev", Nick: "alice", Text: []byte("hi")}))
	must(bb.Publish(Event{Kind: EventMsg, Room: "ops", Nick: "bob", Text: []byte("ops only")}))
	must(ba.Publish(Event{Kind: EventMsg, Room: "nobody", Nick: "alice", Text: []byte("void")}))
	if got := a.take(); !slices.Equal(got, []string{"dev:alice:hi"}) {
		t.Errorf("a got %q", got)
	}
	if got := b.take(); !slices.Equal(got, []string{"dev:alice:hi", "ops:bob:ops only"}) {
		t.Errorf("b got %q", got)
	}

	// Nicks are unique across the net, the claimer's own node included.
	must(ba.ClaimNick("alice"))
	must(bb.ClaimNick("bob"))
	if err := bb.ClaimNick("alice"); !errors.Is(err, ErrNickTaken) {
		t.Errorf("claiming a nick another node holds: %v", err)
	}
	if err := ba.ClaimNick("alice"); !errors.Is(err, ErrNickTaken) {
		t.Errorf("claiming a nick the same node holds: %v", err)
	}
	bb.ReleaseNick("alice") // not bob's node's: no effect
	if err := bb.ClaimNick("alice"); !errors.Is(err, ErrNickTaken) {
		t.Errorf("a node released a nick it did not hold: %v", err)
	}

	// Private messages go to the node holding the nick.
	must(ba.Private(Event{Kind: EventPriv, Nick: "alice", To: "bob", Text: []byte("psst")}))
	if got := b.take(); !slices.Equal(got, []string{"priv:bob:psst"}) {
		t.Errorf("b got %q", got)
	}
	if err := ba.Private(Event{Kind: EventPriv, To: "carol"}); !errors.Is(err, ErrNoSuchNick) {
		t.Errorf("private to nobody: %v", err)
	}

	// Who and Rooms span the nodes.
	who, _ := bb.Who("dev")
	slices.Sort(who)
	if !slices.Equal(who, []string{"alice", "bob"}) {
		t.Errorf("who dev: %q", who)
	}
	rooms, _ := ba.Rooms()
	if rooms["dev"] != 2 || rooms["ops"] != 1 || len(rooms) != 2 {
		t.Errorf("rooms: %v", rooms)
	}

	// Unsubscribe stops delivery; Close releases nicks and subscriptions.
	ba.Unsubscribe("dev")
	must(bb.Publish(Event{Kind: EventMsg, Room: "dev", Nick: "bob", Text: []byte("x")}))
	if got := a.take(); len(got) != 0 {
		t.Errorf("a got %q after unsubscribing", got)
	}
	b.take()
	must(bb.Close())
	must(bb.Close())
	must(ba.ClaimNick("bob"))
	must(ba.Publish(Event{Kind: EventMsg, Room: "ops", Nick: "alice", Text: []byte("y")}))
	if got := b.take(); len(got) != 0 {
		t.Errorf("closed node got %q", got)
	}
	if err := bb.Subscribe("dev"); !errors.Is(err, ErrBusClosed) {
		t.Errorf("subscribe after close: %v", err)
	}
}
