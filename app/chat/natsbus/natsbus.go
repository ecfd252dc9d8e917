// Package natsbus is a chat.Bus on NATS: it joins chat hubs in many
// processes and on many machines into one chat.
//
// Each hub (node) holds one NATS connection and uses it like this:
//
//   - Room traffic goes on one subject per room, <prefix>.room.<room>. A
//     node subscribes to the rooms its local clients are in (when a room
//     gains its first local member) and fans each event out to its local
//     members. The node delivers its own events to its own members
//     directly and connects with NoEcho, so its server does not send them
//     back to it; one that comes back all the same, through a route from
//     the server it left after a failover, is dropped (Stats.Echoes).
//   - Private messages are requests on <prefix>.nick.<nick>, which only the
//     node holding the nick subscribes to; it answers once the PRIV is in
//     its client's buffer. No responder means no such nick.
//   - /who asks <prefix>.who.<room> (the nodes with members there) and
//     /rooms asks <prefix>.rooms (every node), and gathers the replies
//     until none has come for Options.GatherStall (Options.GatherMax at
//     most).
//   - Nicks are claimed in a JetStream key-value bucket with Create, which
//     succeeds for one claimer only, so a nick is unique across the whole
//     bus. A node renews its claims every ClaimTTL/3; the claims of a node
//     that dies without releasing them expire after ClaimTTL. Guest numbers
//     come from one JetStream stream's sequence, so guest-<n> counts up
//     across the bus.
//
// An event is one NATS message, its frame plus at most EventOverhead bytes;
// the node tells the hub (chat.MessageLimiter) to refuse, with "ERR
// too-long", a message longer than the NATS server's max payload allows.
//
// Every room event carries its origin node, and a sequence number per
// origin node and room. A receiving node drops an event it has already
// delivered (so no client gets a message twice) and counts the events it
// never got (Stats.Lost), telling the room's members with "NOTICE lost".
//
// When the NATS connection drops, clients stay connected: every local
// client gets "NOTICE bus-down", chat between clients of the same node
// goes on, and the node reconnects (to any server of the cluster) without
// end. Events the node's clients send meanwhile wait in the connection's
// reconnect buffer (Options.ReconnectBufSize) and are delivered after the
// reconnect, in order; past the buffer the sender gets "ERR unavailable"
// and Stats.PublishErrors counts the event. Events that other nodes sent
// while this one was away are not replayed (NATS core delivers at most
// once): they are counted in Stats.Lost and reported with "NOTICE lost"
// when the sender's next event arrives. On reconnect, once the server has
// the node's subscriptions again, every client gets "NOTICE bus-up".
package natsbus

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcplab/tcplab/app/chat"
)

// The kinds of "NOTICE <kind> <detail>" frames the bus sends clients
// (docs/protocol.md, Notices).
const (
	NoticeBusDown = "bus-down" // to every local client: the connection dropped
	NoticeBusUp   = "bus-up"   // to every local client: it is back
	NoticeLost    = "lost"     // to a room's local members: "lost <room> <n> ..."
)

// NoticeKinds lists the notice kinds in the order docs/protocol.md lists
// them.
func NoticeKinds() []string { return []string{NoticeBusDown, NoticeBusUp, NoticeLost} }

// Defaults, as Options.withDefaults fills them in.
const (
	DefaultPrefix        = "tcplab.chat"
	DefaultBucket        = "tcplab_chat_nicks"
	DefaultClaimTTL      = 30 * time.Second
	DefaultGatherStall   = 100 * time.Millisecond
	DefaultGatherMax     = time.Second
	DefaultTimeout       = 2 * time.Second
	DefaultDrainQuiet    = 200 * time.Millisecond
	DefaultDrainPatience = 2 * time.Second
	DefaultReconnectWait = 250 * time.Millisecond
	DefaultReconnectBuf  = 8 << 20
)

// Options configure a node's attachment to NATS. The zero value of a field
// means its default.
type Options struct {
	// URLs are the NATS servers, comma-separated: "nats://host:port,...".
	// The node connects to one and fails over to the others (and to the
	// servers the cluster announces). Required.
	URLs string
	// Prefix starts every subject the chat uses. Default "tcplab.chat".
	// Chats that share NATS servers need different prefixes and buckets.
	Prefix string
	// Bucket is the JetStream key-value bucket of nick claims; the stream
	// of guest numbers is named after it. Default "tcplab_chat_nicks".
	Bucket string
	// Replicas is the replica count of the bucket and the stream, used
	// when the first node creates them. Default 1; use 3 on a 3-server
	// cluster so that claims survive the loss of a server.
	Replicas int
	// ClaimTTL is how long a nick claim outlives a node that stops
	// renewing it (a crash, or a bus outage that long). Default 30s.
	ClaimTTL time.Duration
	// GatherStall and GatherMax bound a /who or /rooms: replies are
	// gathered until none arrives for GatherStall, or GatherMax has
	// passed. Defaults 100ms and 1s.
	GatherStall time.Duration
	GatherMax   time.Duration
	// Timeout bounds one call to NATS: a claim, a private message's
	// delivery, a flush, connecting. Default 2s.
	Timeout time.Duration
	// DrainQuiet and DrainPatience end a shutting-down node's wait for
	// events in flight (see Net) when other nodes are not shutting down:
	// it waits DrainPatience at least, then until the bus has delivered
	// nothing for DrainQuiet. Defaults 200ms and 2s.
	DrainQuiet    time.Duration
	DrainPatience time.Duration
	// ReconnectWait is the pause before trying a server again after a
	// failed attempt. Default 250ms.
	ReconnectWait time.Duration
	// InOrder connects to URLs in the order given; by default a node
	// picks them in random order, which spreads nodes over the servers.
	InOrder bool
	// ReconnectBufSize bounds the bytes of events held while the node is
	// reconnecting. Default 8 MiB.
	ReconnectBufSize int
	// Logger receives the bus's own events (disconnects, lost claims).
	// Default slog.Default().
	Logger *slog.Logger `json:"-"`
}

// withDefaults fills in unset fields and checks the rest.
func (o Options) withDefaults() (Options, error) {
	o.Prefix = cmp.Or(o.Prefix, DefaultPrefix)
	o.Bucket = cmp.Or(o.Bucket, DefaultBucket)
	o.Replicas = cmp.Or(o.Replicas, 1)
	o.ClaimTTL = cmp.Or(o.ClaimTTL, DefaultClaimTTL)
	o.GatherStall = cmp.Or(o.GatherStall, DefaultGatherStall)
	o.GatherMax = cmp.Or(o.GatherMax, DefaultGatherMax)
	o.Timeout = cmp.Or(o.Timeout, DefaultTimeout)
	o.DrainQuiet = cmp.Or(o.DrainQuiet, DefaultDrainQuiet)
	o.DrainPatience = cmp.Or(o.DrainPatience, DefaultDrainPatience)
	o.ReconnectWait = cmp.Or(o.ReconnectWait, DefaultReconnectWait)
	o.ReconnectBufSize = cmp.Or(o.ReconnectBufSize, DefaultReconnectBuf)
	o.Logger = cmp.Or(o.Logger, slog.Default())
	switch {
	case strings.TrimSpace(o.URLs) == "":
		return o, errors.New("natsbus: no NATS server URL")
	case !validSubjectPrefix(o.Prefix):
		return o, fmt.Errorf("natsbus: subject prefix %q: want dot-separated tokens of A-Z a-z 0-9 _ -", o.Prefix)
	case !validBucket(o.Bucket):
		return o, fmt.Errorf("natsbus: bucket %q: want A-Z a-z 0-9 _ -", o.Bucket)
	case o.Replicas < 1 || o.Replicas > 5:
		return o, fmt.Errorf("natsbus: replicas %d: want 1 to 5", o.Replicas)
	case o.ClaimTTL < time.Second:
		return o, fmt.Errorf("natsbus: claim TTL %v: want at least 1s", o.ClaimTTL)
	case o.GatherStall < 0 || o.GatherMax < o.GatherStall || o.Timeout < 0 || o.DrainQuiet < 0 || o.DrainPatience < 0 || o.ReconnectWait < 0:
		return o, errors.New("natsbus: durations must not be negative, and GatherMax must be at least GatherStall")
	case o.ReconnectBufSize < 0:
		return o, fmt.Errorf("natsbus: reconnect buffer %d: must not be negative", o.ReconnectBufSize)
	}
	return o, nil
}

func validSubjectPrefix(p string) bool {
	for tok := range strings.SplitSeq(p, ".") {
		if !chat.ValidRoom([]byte(tok)) {
			return false
		}
	}
	return true
}

func validBucket(b string) bool { return chat.ValidRoom([]byte(b)) }

// Stats count what a node's bus has done. They only grow.
type Stats struct {
	// Published counts room events and private messages handed to NATS.
	Published uint64
	// Received counts room events from other nodes delivered to local
	// members.
	Received uint64
	// Lost counts room events from other nodes that never arrived: gaps
	// in an origin's sequence, found when its next event arrives.
	Lost uint64
	// Duplicates counts room events dropped because they were already
	// delivered.
	Duplicates uint64
	// Echoes counts the node's own room events that came back to it
	// through another NATS server (a route from the server it left, after
	// a failover); they are dropped, as its members had them already.
	Echoes uint64
	// PublishErrors counts events NATS refused (the reconnect buffer was
	// full, or the connection closed); their senders got ERR unavailable.
	PublishErrors uint64
	// BadEvents counts payloads that did not decode; they are dropped.
	BadEvents uint64
	// Disconnects and Reconnects count the connection's drops and
	// recoveries.
	Disconnects uint64
	Reconnects  uint64
	// AsyncErrors counts errors NATS reported on its own, such as a slow
	// consumer (events dropped because the node fell behind; they show in
	// Lost too).
	AsyncErrors uint64
	// NickConflicts counts claims a node found taken by another node
	// when renewing them (its claim had expired during a long outage).
	NickConflicts uint64
}

type counters struct {
	published, received, lost, duplicates, echoes, publishErrors, badEvents atomic.Uint64
	disconnects, reconnects, asyncErrors, nickConflicts                     atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Published: c.published.Load(), Received: c.received.Load(), Lost: c.lost.Load(),
		Duplicates: c.duplicates.Load(), Echoes: c.echoes.Load(), PublishErrors: c.publishErrors.Load(), BadEvents: c.badEvents.Load(),
		Disconnects: c.disconnects.Load(), Reconnects: c.reconnects.Load(), AsyncErrors: c.asyncErrors.Load(),
		NickConflicts: c.nickConflicts.Load(),
	}
}

// Net attaches one chat hub to NATS. Make one per hub with New and pass
// its Join as chat.Options.Bus:
//
//	n, err := natsbus.New(natsbus.Options{URLs: "nats://127.0.0.1:4222"})
//	h, err := chat.New(chat.Options{Bus: n.Join})
//	...
//	h.Close() // detaches: releases the nicks, closes the connection
//
// At shutdown (chat.Drainer), the node flushes what it published, tells
// the other nodes it has stopped, and waits, until the shutdown deadline
// at the latest, for the events other nodes read before they stopped:
// until every node it recently heard from has said it stopped too, or,
// for nodes that go on, until the bus has been quiet for DrainQuiet after
// DrainPatience. So its clients get those events ahead of their BYE.
type Net struct {
	opts  Options
	stats counters

	mu   sync.Mutex
	link *link // once joined
}

// New checks the options and returns an unattached Net.
func New(o Options) (*Net, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Net{opts: o}, nil
}

// Options returns the options in force, defaults filled in.
func (n *Net) Options() Options { return n.opts }

// Stats returns the node's counters.
func (n *Net) Stats() Stats { return n.stats.snapshot() }

// MaxMessage is the longest MSG or PRIV frame the node can send: the max
// payload of the NATS server it is connected to, less EventOverhead. The
// hub refuses a longer message with "ERR too-long" (chat.MessageLimiter).
// It is 0 before Join.
func (n *Net) MaxMessage() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.link == nil {
		return 0
	}
	return n.link.MaxMessage()
}

// Join connects node to NATS and returns its Bus. It can be called once.
func (n *Net) Join(node chat.Node) (chat.Bus, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.link != nil {
		return nil, errors.New("natsbus: a Net attaches one node; make another with New")
	}
	l, err := dial(n, node)
	if err != nil {
		return nil, err
	}
	n.link = l
	return l, nil
}
