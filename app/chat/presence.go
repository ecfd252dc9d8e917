package chat

import (
	"strconv"
	"sync"
)

// presenceGate handles a presence event (EventJoin, EventLeave,
// EventCount) for r, and reports whether a JOIN or LEAVE goes on to the
// members (fan-out). It tells the members when the event turns presence
// off or on, tells a local joiner when it joins with presence off, and
// answers a join from a node it has not heard from in r with this node's
// count. With no presence limit, every JOIN and LEAVE goes out and
// nothing is counted.
func (h *hub) presenceGate(r *room, ev *Event) bool {
	if h.opts.PresenceLimit <= 0 {
		return ev.Kind != EventCount
	}
	r.fan.RLock()
	members := r.load()
	if len(members) == 0 {
		r.fan.RUnlock()
		return false
	}
	sent, notice, off, stranger := h.presence(r, ev, len(members))
	switch {
	case notice != "":
		out := h.presenceNotice(notice, r.name)
		for _, m := range members {
			m.send(out)
		}
	case off && ev.Kind == EventJoin && ev.Origin.Node == h.id:
		for _, m := range members {
			if m.id == ev.Origin.Conn {
				m.send(h.presenceNotice(NoticePresenceOff, r.name))
			}
		}
	}
	r.fan.RUnlock()
	if stranger && ev.Kind == EventJoin {
		// Outside the fan-out lock: a bus may deliver it here at once.
		h.bus.Publish(Event{Kind: EventCount, Room: r.name, Members: len(r.load()), Origin: Origin{Node: h.id}})
	}
	return sent && ev.Kind != EventCount
}

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

// The kinds of the presence notices: "NOTICE presence-off <room> <detail>"
// and "NOTICE presence-on <room> <detail>".
const (
	NoticePresenceOff = "presence-off"
	NoticePresenceOn  = "presence-on"
)

// remoteCounts are the members other nodes have in a room, by node, as
// their presence events last said.
type remoteCounts struct {
	mu    sync.Mutex
	nodes map[uint64]int
	sum   int
}

// presence decides what a presence event ev, about a room with local
// members here now, does: whether its JOIN or LEAVE may go to the members
// (sent), and the notice every member gets if the event turned the room's
// presence off or on ("" if it did not). off reports whether presence is
// off after the event; stranger, that it came from a node this one had not
// heard from in the room. An event from another node updates what this
// one knows of that node's members.
func (h *hub) presence(r *room, ev *Event, local int) (sent bool, notice string, off, stranger bool) {
	limit := h.opts.PresenceLimit
	rc := &r.remote
	rc.mu.Lock()
	delta := 0 // the change the event made to the room's size
	if ev.Origin.Node != h.id {
		if rc.nodes == nil {
			rc.nodes = map[uint64]int{}
		}
		had, known := rc.nodes[ev.Origin.Node]
		stranger = !known
		delta = ev.Members - had
		rc.sum += delta
		if ev.Members > 0 {
			rc.nodes[ev.Origin.Node] = ev.Members
		} else {
			delete(rc.nodes, ev.Origin.Node)
		}
	}
	after := local + rc.sum
	rc.mu.Unlock()
	before := after - delta
	switch {
	case ev.Origin.Node != h.id:
	case ev.Kind == EventJoin:
		before = after - 1 // local members count the joiner already
	case ev.Kind == EventLeave:
		before = after + 1
	}
	switch {
	case before <= limit && after > limit:
		notice = NoticePresenceOff
	case before > limit && after <= limit:
		notice = NoticePresenceOn
	}
	return max(before, after) <= limit, notice, after > limit, stranger
}

// presenceNotice frames the notice of kind about room.
func (h *hub) presenceNotice(kind, room string) []byte {
	limit := strconv.Itoa(h.opts.PresenceLimit)
	if kind == NoticePresenceOff {
		return h.enc.words("NOTICE", kind, room, "the room has more than "+limit+" members: joins and leaves are not announced; /who lists the members")
	}
	return h.enc.words("NOTICE", kind, room, "the room has "+limit+" members or fewer: joins and leaves are announced again")
}
