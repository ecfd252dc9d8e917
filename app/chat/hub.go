package chat

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcplab/tcplab/handler"
)

// hub is one node of the chat: its local connections, rooms and nicks. It
// implements Node for its bus, and reaches other nodes only through the
// bus.
//
// Membership is copy-on-write: a room's members are an immutable slice
// behind an atomic pointer. Joining or leaving copies the slice under the
// room's own mutex; fan-out loads the pointer and writes to each member
// with no lock but that member's write lock and a read lock on the room's
// fan-out barrier (one per message, not per member), which a member that
// leaves takes once to wait out the fan-outs that loaded the list it was
// in. No lock is global.
type hub struct {
	opts  Options
	enc   encoder
	bus   Bus
	limit MessageLimiter // the bus's, if it bounds messages; else nil
	waits bool           // the bus's calls wait on the network (Waiter): offload them
	id    uint64         // this node, in Event.Origin
	epoch time.Time      // monotonic base for idle timers

	rooms sync.Map // name -> *room
	nicks sync.Map // nick -> *session, local connections only

	conns     atomic.Int64  // connections served now, for MaxConns
	nextConn  atomic.Uint64 // connection ids
	nextGuest atomic.Uint64 // guest-<n>

	// Counters for handler.Counter. Data adds its frames once per call
	// and a fan-out its writes once per message, so a busy room costs one
	// shared atomic add per message, not one per member.
	framesIn, framesOut, rateLimited atomic.Uint64

	bufs sync.Pool // *[]byte scratch for fan-out frames
}

func newHub(o Options) (*hub, error) {
	h := &hub{
		opts:  o,
		enc:   encoder{kind: o.Framing, max: o.MaxServerFrame},
		id:    rand.Uint64(),
		epoch: time.Now(),
	}
	h.bufs.New = func() any { return new([]byte) }
	join := o.Bus
	if join == nil {
		join = NewLocalNet().Join
	}
	bus, err := join(node{h})
	if err != nil {
		return nil, fmt.Errorf("chat: attach to bus: %w", err)
	}
	h.bus = bus
	h.limit, _ = bus.(MessageLimiter)
	if w, ok := bus.(Waiter); ok {
		h.waits = w.Waits()
	}
	return h, nil
}

// messageLimit is the longest MSG or PRIV frame payload a message may
// make: the server frame limit, or the bus's if that is less.
func (h *hub) messageLimit() int {
	if h.limit != nil {
		if n := h.limit.MaxMessage(); n > 0 && n < h.enc.max {
			return n
		}
	}
	return h.enc.max
}

// room is one room's local members.
type room struct {
	name    string
	mu      sync.Mutex // serializes changes to members
	dead    bool       // emptied and removed from hub.rooms; join a new one
	members atomic.Pointer[[]*session]
	// fan is read-locked by each fan-out across its load of members and
	// its writes; leave write-locks it once, after removing the member, so
	// that when leave returns no fan-out still holds a list with the
	// member in it (see leave), and join holds it while it adds the member
	// and queues its first frame (see join).
	fan sync.RWMutex
	// count is the room's size on every node, for the presence limit
	// (presence.go).
	count roomCount
}

func (r *room) load() []*session {
	if p := r.members.Load(); p != nil {
		return *p
	}
	return nil
}

// join adds s to the room called name, creating it (and subscribing the
// node to it) if s is its first local member. first, if not nil, runs
// once s is a member and before any of the room's traffic can reach s
// (when joining can no longer fail). It returns what the presence limit
// makes of the join (presence.go).
func (h *hub) join(s *session, name string, first func()) (*room, presence, error) {
	for {
		v, ok := h.rooms.Load(name)
		if !ok {
			v, _ = h.rooms.LoadOrStore(name, &room{name: name})
		}
		r := v.(*room)
		r.mu.Lock()
		if r.dead {
			r.mu.Unlock()
			continue // it emptied meanwhile; it is gone from the map
		}
		old := r.load()
		if len(old) == 0 {
			if err := h.bus.Subscribe(name); err != nil {
				r.dead = true
				h.rooms.CompareAndDelete(name, r)
				r.mu.Unlock()
				return nil, presence{}, err
			}
		}
		next := make([]*session, len(old)+1)
		copy(next, old)
		next[len(old)] = s
		// With the barrier held no fan-out runs, so none reaches s
		// between its membership and first's frame (its OK or HELLO),
		// and that frame is queued only once /who and /rooms count s.
		r.fan.Lock()
		r.members.Store(&next)
		if first != nil {
			first()
		}
		r.fan.Unlock()
		p := h.localPresence(r, 1, s.id)
		r.mu.Unlock()
		return r, p, nil
	}
}

// leave removes s from r. The last member out unsubscribes the node and
// removes the room; Unsubscribe runs before the room leaves the map, so a
// later join's Subscribe always follows it.
//
// When leave returns, s gets none of r's traffic any more: it waits for
// the fan-outs to r that loaded a member list with s in it (a fan-out
// never waits for a receiver, so that is short), and later ones load the
// list without s. So a member that moves to another room gets its OK join
// after the last of its old room's traffic. It returns what the presence
// limit makes of the leave.
func (h *hub) leave(s *session, r *room) presence {
	p := h.remove(s, r)
	r.fan.Lock()
	//lint:ignore SA2001 an empty critical section is the barrier: it waits for the fan-outs in progress
	r.fan.Unlock()
	return p
}

// remove is leave's first half: s out of r's member list.
func (h *hub) remove(s *session, r *room) presence {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.load()
	next := make([]*session, 0, len(old))
	for _, m := range old {
		if m != s {
			next = append(next, m)
		}
	}
	if len(next) == 0 {
		r.dead = true
		h.bus.Unsubscribe(r.name)
		h.rooms.CompareAndDelete(r.name, r)
	}
	r.members.Store(&next)
	return h.localPresence(r, -1, 0)
}

// claim reserves nick on the bus and registers s under it locally.
func (h *hub) claim(s *session, nick string) error {
	if err := h.bus.ClaimNick(nick); err != nil {
		return err
	}
	h.nicks.Store(nick, s)
	return nil
}

// release undoes claim.
func (h *hub) release(s *session, nick string) {
	h.nicks.CompareAndDelete(nick, s)
	h.bus.ReleaseNick(nick)
}

// nextGuestNumber returns the next guest number: from the bus if it counts
// for all its nodes, else from the hub's own counter.
func (h *hub) nextGuestNumber() (uint64, error) {
	if gc, ok := h.bus.(GuestCounter); ok {
		return gc.NextGuest()
	}
	return h.nextGuest.Add(1), nil
}

// claimGuest claims the next free guest-<n> nick.
func (h *hub) claimGuest(s *session) (string, error) {
	for {
		n, err := h.nextGuestNumber()
		if err != nil {
			return "", err
		}
		nick := "guest-" + strconv.FormatUint(n, 10)
		err = h.claim(s, nick)
		if err == nil {
			return nick, nil
		}
		if !errors.Is(err, ErrNickTaken) {
			return "", err
		}
	}
}

// origin is the Event.Origin of s.
func (h *hub) origin(s *session) Origin { return Origin{Node: h.id, Conn: s.id} }

// encodeEvent frames ev for the wire into *buf. It fails if the frame is
// over the server's frame limit.
func (h *hub) encodeEvent(buf *[]byte, ev *Event) ([]byte, error) {
	p := (*buf)[:0]
	switch ev.Kind {
	case EventMsg:
		p = append(p, "MSG "...)
		p = append(p, ev.Room...)
		p = append(p, ' ')
		p = append(p, ev.Nick...)
		p = append(p, ' ')
		p = append(p, ev.Text...)
	case EventJoin, EventLeave:
		if ev.Kind == EventJoin {
			p = append(p, "JOIN "...)
		} else {
			p = append(p, "LEAVE "...)
		}
		p = append(p, ev.Room...)
		p = append(p, ' ')
		p = append(p, ev.Nick...)
	case EventPriv:
		p = append(p, "PRIV "...)
		p = append(p, ev.Nick...)
		p = append(p, ' ')
		p = append(p, ev.Text...)
	default:
		return nil, fmt.Errorf("chat: unknown event kind %d", ev.Kind)
	}
	n := len(p)
	out, err := h.enc.frame(p, p)
	*buf = out
	if err != nil {
		return nil, err
	}
	return out[n:], nil
}

// eventLen is the payload length of the frame encodeEvent would make for a
// message of kind with the given names and text.
func eventLen(kind EventKind, room, nick string, text []byte) int {
	if kind == EventPriv {
		return len("PRIV ") + len(nick) + 1 + len(text)
	}
	return len("MSG ") + len(room) + 1 + len(nick) + 1 + len(text)
}

// node is the hub as its bus sees it.
type node struct{ h *hub }

var _ Node = node{}

// Deliver fans a room event out to the local members: the frame is encoded
// once and written to each member but the origin, under a read lock of the
// room's fan-out barrier (see leave). A message from a local member that
// leaves a receiver over its flow-control mark asks the sender to pause
// (flow.go). A join or a leave in a room over the presence limit goes to
// no one (presence.go).
func (n node) Deliver(ev Event) {
	h := n.h
	v, ok := h.rooms.Load(ev.Room)
	if !ok {
		return
	}
	r := v.(*room)
	if ev.Kind != EventMsg && !h.presenceGate(r, &ev) {
		return
	}
	r.fan.RLock()
	defer r.fan.RUnlock()
	members := r.load()
	if len(members) == 0 {
		return
	}
	buf := h.bufs.Get().(*[]byte)
	defer h.bufs.Put(buf)
	out, err := h.encodeEvent(buf, &ev)
	if err != nil {
		return // the sender checked the size; a remote node may allow more
	}
	sent := uint64(0)
	local := ev.Origin.Node == h.id
	flow := local && ev.Kind == EventMsg
	var origin *session
	var stall time.Duration
	for _, m := range members {
		if local && ev.Origin.Conn == m.id {
			origin = m
			continue
		}
		if m.write(out) {
			sent++
			if flow {
				stall = max(stall, h.stallFor(m, len(out)))
			}
		}
	}
	h.framesOut.Add(sent)
	if stall > 0 && origin != nil {
		origin.askStall(stall)
	}
}

func (n node) DeliverPrivate(ev Event) bool {
	h := n.h
	v, ok := h.nicks.Load(ev.To)
	if !ok {
		return false
	}
	buf := h.bufs.Get().(*[]byte)
	defer h.bufs.Put(buf)
	out, err := h.encodeEvent(buf, &ev)
	if err != nil {
		return true // delivered as far as the sender can tell; see Deliver
	}
	v.(*session).send(out)
	return true
}

func (n node) Members(name string) []string {
	v, ok := n.h.rooms.Load(name)
	if !ok {
		return nil
	}
	members := v.(*room).load()
	nicks := make([]string, len(members))
	for i, m := range members {
		nicks[i] = m.nickname()
	}
	return nicks
}

func (n node) Rooms() map[string]int {
	rooms := map[string]int{}
	n.h.rooms.Range(func(k, v any) bool {
		if c := len(v.(*room).load()); c > 0 {
			rooms[k.(string)] = c
		}
		return true
	})
	return rooms
}

func (n node) Notice(name string, words ...string) {
	h := n.h
	out := h.enc.words(append([]string{"NOTICE"}, words...)...)
	if name != "" {
		if v, ok := h.rooms.Load(name); ok {
			for _, m := range v.(*room).load() {
				m.send(out)
			}
		}
		return
	}
	h.nicks.Range(func(_, v any) bool {
		v.(*session).send(out)
		return true
	})
}

// list frames "OK <what> item item ...", cutting the list with "..."
// where the frame would pass the server's frame limit. Only an item with
// more after it must leave room for the " ..." that may follow it; a list
// that fits whole is never cut.
func (h *hub) list(dst []byte, what string, items []string) []byte {
	p := append([]byte("OK "), what...)
	for i, it := range items {
		room := 0
		if i < len(items)-1 {
			room = len(" ...")
		}
		if len(p)+1+len(it)+room > h.enc.max {
			p = append(p, " ..."...)
			break
		}
		p = append(p, ' ')
		p = append(p, it...)
	}
	out, _ := h.enc.frame(dst, p) // fits by construction
	return out
}

// open serves a new connection: the Handler's Open.
func (h *hub) open(c handler.Conn) handler.Session {
	s := &session{hub: h, conn: c, id: h.nextConn.Add(1)}
	s.flow.conn, _ = c.(handler.Flow)
	if h.conns.Add(1) > int64(h.opts.MaxConns) {
		h.conns.Add(-1)
		s.refused = true
		s.closeWith(h.enc.closing(CodeServerFull, "too many connections"), errServerFull)
		return s
	}
	s.offload(s.begin)
	return s
}
