package chat

import (
	"strconv"
	"sync"
)

// Presence (JOIN and LEAVE) costs a room of n members n frames per join:
// n² for a room that fills up, 40 million frames for 9,000 members. So
// above Options.PresenceLimit members a room's presence is off: JOIN and
// LEAVE are not sent to its members (/who still lists them all). A member
// joining a room whose presence is off is told so (NOTICE presence-off),
// and when a join or a leave turns a room's presence off or back on, every
// member is told (NOTICE presence-off, NOTICE presence-on).
//
// A room's size is its members on every node of the bus, as this node
// knows it: its own members, plus what the last presence event from each
// other node said that node had (Event.Members). A node that gets a join
// from a node it has not heard from in the room answers with its own count
// (EventCount, which no client sees), so a node whose first member has
// just joined learns the others' counts a bus round trip later: until
// then it counts fewer, and tells its members presence is off (or on)
// when it learns better.
//
// The node counts its own members as they join and leave, under the
// room's lock, and other nodes' as their events arrive: each change moves
// the count once, in one order, so a crossing of the limit is told exactly
// once. A local join or leave is judged when it happens, and its event
// carries the verdict to this node's fan-out (Event.quiet).

// The kinds of the presence notices: "NOTICE presence-off <room> <detail>"
// and "NOTICE presence-on <room> <detail>".
const (
	NoticePresenceOff = "presence-off"
	NoticePresenceOn  = "presence-on"
)

// roomCount is a room's size as this node knows it, for the presence
// limit. Its mutex also keeps the notices of one room in the order of the
// changes that caused them.
type roomCount struct {
	mu     sync.Mutex
	local  int            // this node's members, counted as they join and leave (localPresence)
	remote map[uint64]int // other nodes' members, as their events last said
	sum    int            // of remote
}

// presence is what the presence limit makes of a local join or leave:
// whether its JOIN or LEAVE frame goes to the members, and this node's
// count of the room's members after it (Event.Members).
type presence struct {
	sent    bool
	members int
}

// localPresence counts a local member joining r (delta 1, joiner its
// connection id) or leaving it (delta -1, joiner 0). It is called with
// r.mu held, just after the member list changed. It tells the members
// when the change turned presence off or on, and the joiner when it joined
// with presence off.
func (h *hub) localPresence(r *room, delta int, joiner uint64) presence {
	rc := &r.count
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.local += delta
	limit := h.opts.PresenceLimit
	if limit <= 0 {
		return presence{sent: true, members: rc.local}
	}
	after := rc.local + rc.sum
	h.announce(r, after-delta, after, joiner)
	return presence{sent: max(after-delta, after) <= limit, members: rc.local}
}

// presenceGate handles a presence event (EventJoin, EventLeave,
// EventCount) as it is delivered to r, and reports whether a JOIN or
// LEAVE goes on to the members (fan-out). One from this node was judged
// when it happened (localPresence). One from another node updates what
// this node knows of that node's members; its frame goes out only when
// the room had at most the limit both before and after it, the members
// are told when it turned presence off or on, and a join from a node not
// heard from in r before is answered with this node's count. With no
// presence limit, every JOIN and LEAVE goes out and nothing is counted.
func (h *hub) presenceGate(r *room, ev *Event) bool {
	if ev.Origin.Node == h.id {
		return ev.Kind != EventCount && !ev.quiet
	}
	limit := h.opts.PresenceLimit
	if limit <= 0 {
		return ev.Kind != EventCount
	}
	rc := &r.count
	rc.mu.Lock()
	if rc.remote == nil {
		rc.remote = map[uint64]int{}
	}
	had, known := rc.remote[ev.Origin.Node]
	delta := ev.Members - had
	rc.sum += delta
	if ev.Members > 0 {
		rc.remote[ev.Origin.Node] = ev.Members
	} else {
		delete(rc.remote, ev.Origin.Node)
	}
	after := rc.local + rc.sum
	h.announce(r, after-delta, after, 0)
	local := rc.local
	rc.mu.Unlock()
	if !known && ev.Kind == EventJoin && local > 0 {
		// Outside the count's lock: a bus may deliver it here at once.
		h.bus.Publish(Event{Kind: EventCount, Room: r.name, Members: local, Origin: Origin{Node: h.id}})
	}
	return max(after-delta, after) <= limit && ev.Kind != EventCount
}

// announce tells r's members when a change of its size from before to
// after turned presence off or on, and otherwise the joiner (a connection
// id; 0 for none) if it joined with presence off. Called with r.count.mu
// held, which keeps the notices in the order of the changes.
func (h *hub) announce(r *room, before, after int, joiner uint64) {
	limit := h.opts.PresenceLimit
	switch {
	case before <= limit && after > limit:
		h.tell(r, 0, h.presenceNotice(NoticePresenceOff, r.name))
	case before > limit && after <= limit:
		h.tell(r, 0, h.presenceNotice(NoticePresenceOn, r.name))
	case after > limit && joiner != 0:
		h.tell(r, joiner, h.presenceNotice(NoticePresenceOff, r.name))
	}
}

// tell sends out to r's local member with connection id conn, or to every
// local member if conn is 0 (connection ids count from 1).
func (h *hub) tell(r *room, conn uint64, out []byte) {
	r.fan.RLock()
	defer r.fan.RUnlock()
	for _, m := range r.load() {
		if conn == 0 || m.id == conn {
			m.send(out)
		}
	}
}

// presenceNotice frames the notice of kind about room.
func (h *hub) presenceNotice(kind, room string) []byte {
	limit := strconv.Itoa(h.opts.PresenceLimit)
	if kind == NoticePresenceOff {
		return h.enc.words("NOTICE", kind, room, "the room has more than "+limit+" members: joins and leaves are not announced; /who lists the members")
	}
	return h.enc.words("NOTICE", kind, room, "the room has "+limit+" members or fewer: joins and leaves are announced again")
}
