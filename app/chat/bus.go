package chat

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// EventKind says what an Event carries.
type EventKind uint8

// The kinds of Event.
const (
	EventMsg   EventKind = iota + 1 // a room message: MSG <room> <nick> <text>
	EventJoin                       // Nick joined Room: JOIN <room> <nick>
	EventLeave                      // Nick left Room: LEAVE <room> <nick>
	EventPriv                       // a private message to To: PRIV <nick> <text>
	// EventCount tells the other nodes how many members of Room the
	// origin has (Members), for the presence limit; no client sees it.
	// A node sends one to answer a join from a node new to the room.
	EventCount
)

// Origin identifies the connection an event came from: a node (hub) and a
// connection on it. A node never delivers an event back to its origin.
type Origin struct {
	Node uint64 // random per hub, so unique across processes in practice
	Conn uint64 // counts up per hub
}

// Event is chat traffic between hubs.
type Event struct {
	Kind EventKind
	Room string // EventMsg, EventJoin, EventLeave
	Nick string // the sender (EventMsg, EventPriv) or the member (EventJoin, EventLeave)
	To   string // EventPriv: the recipient
	// Text is the message (EventMsg, EventPriv). It belongs to the caller
	// of Publish or Private and is valid only during that call: a bus that
	// delivers later must copy it. Likewise it is valid only during
	// Node.Deliver and Node.DeliverPrivate.
	Text []byte
	// Members, in an EventJoin, EventLeave or EventCount, is how many
	// members of Room the origin's node has (after the change; 0 if none,
	// or not known): the other nodes add it up against the presence
	// limit.
	Members int
	Origin  Origin

	// quiet, in a JOIN or LEAVE from this node, says that the origin's
	// node decided, as the member joined or left, not to send its frame
	// (the presence limit). Other nodes decide for themselves; a bus need
	// not carry it.
	quiet bool
}

// Errors a Bus returns.
var (
	// ErrNickTaken is returned by ClaimNick for a nick held anywhere on
	// the bus.
	ErrNickTaken = errors.New("nick taken")
	// ErrNoSuchNick is returned by Private when no node holds the nick.
	ErrNoSuchNick = errors.New("no such nick")
	// ErrBusClosed is returned after Close.
	ErrBusClosed = errors.New("bus closed")
)

// Node is what a Bus delivers to: one hub, with its local connections.
// The hub implements it; a Bus implementation calls it.
type Node interface {
	// Deliver hands a room event (EventMsg, EventJoin, EventLeave) to
	// the node's local members of ev.Room, except ev.Origin. It writes
	// to their connections and returns; it never waits for the network.
	Deliver(ev Event)
	// DeliverPrivate hands an EventPriv to the local connection named
	// ev.To. It reports false if no local connection has that nick.
	DeliverPrivate(ev Event) bool
	// Members returns the nicks of the node's local members of room.
	Members(room string) []string
	// Rooms returns the node's local rooms and their local member counts.
	Rooms() map[string]int
	// Notice sends "NOTICE <words...>" to the node's local members of
	// room, or to every local connection if room is "". A bus uses it to
	// tell clients about the bus itself: its connection dropped or came
	// back, or events from other nodes were lost.
	Notice(room string, words ...string)
}

// GuestCounter is an optional interface for a Bus. A bus that has one
// counter for all its nodes implements it, and the hub numbers its guests
// (guest-<n>) from it instead of from its own counter, so that guest nicks
// rarely collide across nodes and count up across the whole chat.
type GuestCounter interface {
	// NextGuest returns the next guest number, counting from 1.
	NextGuest() (uint64, error)
}

// MessageLimiter is an optional interface for a Bus whose transport
// bounds the size of one event (a NATS server's max payload). The hub
// refuses a message whose MSG or PRIV frame would pass the bus's limit
// with "ERR too-long", as it does one that would pass
// Options.MaxServerFrame, rather than let the bus fail to carry it.
type MessageLimiter interface {
	// MaxMessage returns the longest MSG or PRIV frame payload, as the hub
	// encodes it, that the bus can carry now; 0 means no limit of its
	// own. It is called once per message, so it must be cheap.
	MaxMessage() int
}

// Waiter is an optional interface for a Bus whose calls wait on the
// network (NATS): ClaimNick, ReleaseNick, NextGuest, Subscribe, Private,
// Who and Rooms. When Waits reports true, the hub makes those calls
// through handler.Offload, in the commands that make them (/nick, /join,
// /rooms, /who, /msg) and in a connection's start and end, so that on an
// event-loop model no connection waits for the bus on a loop; replies
// keep the connection's order. Publish and Unsubscribe must not wait.
type Waiter interface {
	Waits() bool
}

// Drainer is an optional interface for a Bus that delivers asynchronously
// (from another process). At shutdown, once the server has stopped reading
// its connections and before it says BYE to them, the hub calls Drain:
// the bus waits, until deadline at the latest, for events still in flight
// from other nodes to be delivered.
type Drainer interface {
	Drain(deadline time.Time)
}

// Bus carries room traffic, private messages, presence and nick claims
// between hubs, which may be in one process (LocalNet) or many (a message
// system). A hub talks to the bus only through this interface and does not
// know which implementation it has.
//
// Delivery rules every implementation keeps: an event reaches each node
// subscribed to its room at most once, and the events one connection
// publishes reach a node in the order they were published. The hub skips
// the origin connection itself, so a sender never gets its own message.
type Bus interface {
	// Subscribe asks for room's events to be delivered to this node. The
	// hub calls it when the room gains its first local member, and
	// Unsubscribe when it loses its last. Calls for one room never
	// overlap and alternate, starting with Subscribe.
	Subscribe(room string) error
	// Unsubscribe stops delivery of room's events to this node.
	Unsubscribe(room string)
	// Publish sends a room event to every node subscribed to ev.Room,
	// this one included.
	Publish(ev Event) error
	// Private sends an EventPriv to the node holding ev.To. It returns
	// ErrNoSuchNick if no node does.
	Private(ev Event) error
	// ClaimNick reserves nick for this node, or returns ErrNickTaken if
	// any node, this one included, holds it.
	ClaimNick(nick string) error
	// ReleaseNick gives up a nick this node claimed.
	ReleaseNick(nick string)
	// Who returns the members of room on every node, unsorted.
	Who(room string) ([]string, error)
	// Rooms returns every room with members on any node, and the member
	// counts summed over the nodes.
	Rooms() (map[string]int, error)
	// Close detaches the node, releasing its nicks and subscriptions.
	Close() error
}

// LocalNet is the in-process Bus: it connects the hubs of one process by
// calling them directly, on the publisher's goroutine. A server that runs
// one chat handler gets a LocalNet of its own; several handlers (nodes) in
// one process can share one to act as one chat.
//
// Room traffic takes no lock: the room's list of subscribed nodes is read
// from a sync.Map of immutable slices. Only subscribe, unsubscribe, nick
// release and Rooms take the net's mutex.
type LocalNet struct {
	mu    sync.Mutex
	links map[*localLink]struct{}
	subs  sync.Map // room -> []*localLink, replaced, never modified
	nicks sync.Map // nick -> *localLink
}

// NewLocalNet returns an empty in-process bus.
func NewLocalNet() *LocalNet {
	return &LocalNet{links: map[*localLink]struct{}{}}
}

// Join attaches node to the net and returns its Bus. Its signature fits
// Options.Bus.
func (n *LocalNet) Join(node Node) (Bus, error) {
	l := &localLink{net: n, node: node}
	n.mu.Lock()
	n.links[l] = struct{}{}
	n.mu.Unlock()
	return l, nil
}

// localLink is one node's attachment to a LocalNet.
type localLink struct {
	net    *LocalNet
	node   Node
	closed bool // guarded by net.mu
}

func (l *localLink) subscribers(room string) []*localLink {
	v, _ := l.net.subs.Load(room)
	s, _ := v.([]*localLink)
	return s
}

func (l *localLink) Subscribe(room string) error {
	n := l.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if l.closed {
		return fmt.Errorf("subscribe %s: %w", room, ErrBusClosed)
	}
	old := l.subscribers(room)
	next := make([]*localLink, len(old), len(old)+1)
	copy(next, old)
	n.subs.Store(room, append(next, l))
	return nil
}

func (l *localLink) Unsubscribe(room string) {
	n := l.net
	n.mu.Lock()
	defer n.mu.Unlock()
	l.unsubscribeLocked(room)
}

func (l *localLink) unsubscribeLocked(room string) {
	old := l.subscribers(room)
	next := make([]*localLink, 0, len(old))
	for _, s := range old {
		if s != l {
			next = append(next, s)
		}
	}
	if len(next) == 0 {
		l.net.subs.Delete(room)
	} else {
		l.net.subs.Store(room, next)
	}
}

func (l *localLink) Publish(ev Event) error {
	for _, s := range l.subscribers(ev.Room) {
		s.node.Deliver(ev)
	}
	return nil
}

func (l *localLink) Private(ev Event) error {
	v, ok := l.net.nicks.Load(ev.To)
	if !ok || !v.(*localLink).node.DeliverPrivate(ev) {
		return fmt.Errorf("private message to %s: %w", ev.To, ErrNoSuchNick)
	}
	return nil
}

func (l *localLink) ClaimNick(nick string) error {
	if _, loaded := l.net.nicks.LoadOrStore(nick, l); loaded {
		return fmt.Errorf("claim %s: %w", nick, ErrNickTaken)
	}
	return nil
}

func (l *localLink) ReleaseNick(nick string) { l.net.nicks.CompareAndDelete(nick, l) }

func (l *localLink) Who(room string) ([]string, error) {
	var nicks []string
	for _, s := range l.subscribers(room) {
		nicks = append(nicks, s.node.Members(room)...)
	}
	return nicks, nil
}

func (l *localLink) Rooms() (map[string]int, error) {
	n := l.net
	n.mu.Lock()
	links := make([]*localLink, 0, len(n.links))
	for s := range n.links {
		links = append(links, s)
	}
	n.mu.Unlock()
	rooms := map[string]int{}
	for _, s := range links {
		for r, c := range s.node.Rooms() {
			rooms[r] += c
		}
	}
	return rooms, nil
}

func (l *localLink) Close() error {
	n := l.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	delete(n.links, l)
	n.subs.Range(func(room, _ any) bool {
		l.unsubscribeLocked(room.(string))
		return true
	})
	n.nicks.Range(func(nick, v any) bool {
		n.nicks.CompareAndDelete(nick, l)
		return true
	})
	return nil
}
