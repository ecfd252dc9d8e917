package natsbus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tcplab/tcplab/app/chat"
)

// ErrBusDown is returned by the calls that need an answer from other nodes
// (a private message to another node, /who, /rooms, a nick claim) while
// the node is not connected to NATS.
var ErrBusDown = errors.New("not connected to the message bus")

// Capacities of the channels NATS delivers into. Past them NATS drops and
// reports a slow consumer; the sequence numbers count the loss.
const (
	dataQueue = 1 << 16
	ctlQueue  = 1 << 10
)

// subjects are the subjects of one chat (one prefix).
type subjects struct {
	room, who, nick string // prefixes: add the room or nick
	rooms, guests   string
	quiesced        string // a shutting-down node's last word
}

func newSubjects(prefix string) subjects {
	return subjects{
		room:     prefix + ".room.",
		who:      prefix + ".who.",
		nick:     prefix + ".nick.",
		rooms:    prefix + ".rooms",
		guests:   prefix + ".guests",
		quiesced: prefix + ".quiesced",
	}
}

// link is one node's attachment to NATS: its chat.Bus.
type link struct {
	net   *Net
	opts  Options
	stats *counters
	node  chat.Node
	subj  subjects
	nc    *nats.Conn

	claims *claims

	// data carries room events and private messages in the order the
	// server sent them, to one goroutine, so events from one origin are
	// delivered in order whatever their room. ctl carries /who and /rooms
	// requests to another, so that a busy room does not hold them up.
	data, ctl chan *nats.Msg
	// lastArrival is when the data goroutine last finished an event
	// (UnixNano), for Drain.
	lastArrival atomic.Int64
	// down is set while the clients have been told bus-down and not yet
	// bus-up.
	down atomic.Bool
	// maxPayload is the max payload the NATS server the node is connected
	// to announced (MaxMessage).
	maxPayload atomic.Int64

	mu       sync.Mutex
	rooms    map[string]*roomSub
	roomsSub *nats.Subscription
	closed   bool

	seenMu sync.Mutex
	seen   map[string]map[uint64]position // room -> origin node -> last delivered
	// heard is when the node last delivered an event from each origin, and
	// done the origins that said they have quiesced (Drain). Only origins
	// in heard matter in done, and done is pruned to them (quiesced).
	heard map[uint64]time.Time
	done  map[uint64]bool
	// doneLimit is the size of done that makes the next marker prune it.
	doneLimit int
	// self is this node's id as its events carry it (Origin.Node), once it
	// has published one.
	self atomic.Uint64

	quit chan struct{}
	wg   sync.WaitGroup
	bufs sync.Pool // *[]byte encode buffers
}

// roomSub is a room the node is subscribed to, and its own sequence of
// events published there.
type roomSub struct {
	sub, who *nats.Subscription
	mu       sync.Mutex // orders seq with the publish
	epoch    uint64
	seq      uint64
}

var (
	_ chat.Bus            = (*link)(nil)
	_ chat.GuestCounter   = (*link)(nil)
	_ chat.Drainer        = (*link)(nil)
	_ chat.MessageLimiter = (*link)(nil)
	_ chat.Waiter         = (*link)(nil)
)

// dial connects node to NATS.
func dial(n *Net, node chat.Node) (*link, error) {
	o := n.opts
	l := &link{
		net:   n,
		opts:  o,
		stats: &n.stats,
		node:  node,
		subj:  newSubjects(o.Prefix),
		data:  make(chan *nats.Msg, dataQueue),
		ctl:   make(chan *nats.Msg, ctlQueue),
		rooms: map[string]*roomSub{},
		seen:  map[string]map[uint64]position{},
		heard: map[uint64]time.Time{},
		done:  map[uint64]bool{},
		quit:  make(chan struct{}),

		doneLimit: maxHeard,
	}
	l.bufs.New = func() any { return new([]byte) }
	nopts := []nats.Option{
		nats.Name("tcplab chat node"),
		nats.NoEcho(),
		nats.Timeout(o.Timeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(o.ReconnectWait),
		nats.ReconnectJitter(o.ReconnectWait/4, o.ReconnectWait/4),
		nats.ReconnectBufSize(o.ReconnectBufSize),
		nats.DisconnectErrHandler(l.disconnected),
		nats.ReconnectHandler(l.reconnected),
		nats.ErrorHandler(l.asyncError),
	}
	if o.InOrder {
		nopts = append(nopts, nats.DontRandomize())
	}
	nc, err := nats.Connect(o.URLs, nopts...)
	if err != nil {
		return nil, fmt.Errorf("natsbus: connect to %s: %w", o.URLs, err)
	}
	l.nc = nc
	l.maxPayload.Store(nc.MaxPayload())
	l.claims, err = l.openClaimsPatiently()
	if err == nil {
		l.roomsSub, err = nc.ChanSubscribe(l.subj.rooms, l.ctl)
	}
	if err == nil {
		_, err = nc.ChanSubscribe(l.subj.quiesced, l.data)
	}
	if err != nil {
		l.mu.Lock()
		l.closed = true // no disconnect notice
		l.mu.Unlock()
		nc.Close()
		return nil, err
	}
	l.wg.Add(3)
	go l.loop(l.data, func(m *nats.Msg) {
		l.handleData(m)
		l.lastArrival.Store(time.Now().UnixNano())
	})
	go l.loop(l.ctl, l.answer)
	go l.claims.renewLoop()
	return l, nil
}

// joinPatience is how long a node waits for JetStream to place the nick
// bucket: a cluster that has just started elects its JetStream leader
// within seconds.
const joinPatience = 30 * time.Second

// openClaimsPatiently opens the claims, retrying while JetStream is not
// ready yet; a server without JetStream is an error at once.
func (l *link) openClaimsPatiently() (*claims, error) {
	deadline := time.Now().Add(joinPatience)
	for warned := false; ; warned = true {
		ctx, cancel := context.WithTimeout(context.Background(), l.opts.Timeout)
		c, err := openClaims(ctx, l)
		cancel()
		if err == nil || errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
			errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) || time.Now().After(deadline) {
			return c, err
		}
		if !warned {
			l.opts.Logger.Warn("chat bus: waiting for JetStream to be ready", "err", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (l *link) disconnected(_ *nats.Conn, err error) {
	if l.isClosed() {
		return
	}
	l.stats.disconnects.Add(1)
	l.opts.Logger.Warn("chat bus: disconnected; reconnecting", "err", err)
	l.down.Store(true)
	l.node.Notice("", NoticeBusDown, "lost the connection to the message bus; reconnecting; chat with clients of other servers is paused")
}

// reconnected tells the clients the bus is back once the server has the
// node's subscriptions again (a flush, as in Subscribe): the client
// library resends them on reconnect, but an event another node publishes
// before the server has read them would not reach this node. An event
// that arrives before the flush's answer tells them first (busUp).
func (l *link) reconnected(nc *nats.Conn) {
	l.stats.reconnects.Add(1)
	if err := nc.FlushTimeout(l.opts.Timeout); err != nil {
		l.opts.Logger.Warn("chat bus: reconnected, but the server did not confirm the subscriptions", "err", err)
	}
	l.opts.Logger.Info("chat bus: reconnected", "server", nc.ConnectedUrlRedacted())
	if mp := nc.MaxPayload(); l.maxPayload.Swap(mp) != mp {
		l.opts.Logger.Warn("chat bus: this NATS server's max payload differs from the last one's",
			"max_payload", mp, "longest_message_frame", l.MaxMessage())
	}
	l.busUp()
}

// MaxMessage is the longest MSG or PRIV frame the NATS server the node is
// connected to carries: its max payload less EventOverhead. The hub
// refuses a longer message with ERR too-long.
func (l *link) MaxMessage() int { return max(1, int(l.maxPayload.Load())-EventOverhead) }

// busUp tells the clients the bus is back, once per outage: the first of
// the reconnect's flush and the first event from the server again, so
// that no client gets another server's traffic before NOTICE bus-up.
func (l *link) busUp() {
	if l.down.CompareAndSwap(true, false) {
		l.node.Notice("", NoticeBusUp, "reconnected to the message bus")
	}
}

func (l *link) asyncError(_ *nats.Conn, _ *nats.Subscription, err error) {
	l.stats.asyncErrors.Add(1)
	l.opts.Logger.Warn("chat bus: error", "err", err)
}

func (l *link) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Subscribe subscribes to the room's events and its /who requests, and
// waits until the node's own server has them (a flush), so that the
// traffic through that server reaches the node from the moment its client
// is told OK join. The rest of a cluster learns of the subscription a
// moment later, as NATS propagates interest between servers.
func (l *link) Subscribe(room string) error {
	if err := l.subscribe(room); err != nil {
		return err
	}
	if l.nc.IsConnected() {
		l.nc.FlushTimeout(l.opts.Timeout)
	}
	return nil
}

func (l *link) subscribe(room string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("subscribe %s: %w", room, chat.ErrBusClosed)
	}
	sub, err := l.nc.ChanSubscribe(l.subj.room+room, l.data)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", room, err)
	}
	who, err := l.nc.ChanSubscribe(l.subj.who+room, l.ctl)
	if err != nil {
		sub.Unsubscribe()
		return fmt.Errorf("subscribe %s: %w", room, err)
	}
	l.rooms[room] = &roomSub{sub: sub, who: who, epoch: rand.Uint64()}
	return nil
}

func (l *link) Unsubscribe(room string) {
	rs := take(&l.mu, l.rooms, room)
	if rs == nil {
		return
	}
	rs.sub.Unsubscribe()
	rs.who.Unsubscribe()
	l.seenMu.Lock()
	delete(l.seen, room)
	l.seenMu.Unlock()
}

// Publish delivers ev to this node's members at once, then sends it to
// the other nodes.
func (l *link) Publish(ev chat.Event) error {
	l.node.Deliver(ev)
	l.self.Store(ev.Origin.Node)
	l.mu.Lock()
	rs := l.rooms[ev.Room]
	l.mu.Unlock()
	if rs == nil { // the last local member's LEAVE: unsequenced
		return l.send(l.subj.room+ev.Room, &ev, position{})
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	err := l.send(l.subj.room+ev.Room, &ev, position{epoch: rs.epoch, seq: rs.seq + 1})
	if err == nil {
		// An event NATS refused takes no number: its sender is told, and
		// the receivers must not count it lost as well.
		rs.seq++
	}
	return err
}

// take removes k from m, under mu, and returns its value.
func take[K comparable, V any](mu *sync.Mutex, m map[K]V, k K) V {
	mu.Lock()
	defer mu.Unlock()
	v := m[k]
	delete(m, k)
	return v
}

// send publishes ev on subject.
func (l *link) send(subject string, ev *chat.Event, pos position) error {
	buf := l.bufs.Get().(*[]byte)
	defer l.bufs.Put(buf)
	*buf = appendEvent((*buf)[:0], ev, pos)
	if err := l.nc.Publish(subject, *buf); err != nil {
		l.stats.publishErrors.Add(1)
		return fmt.Errorf("not sent to other servers: %w", err)
	}
	l.stats.published.Add(1)
	return nil
}

// Private delivers to a local nick directly; otherwise it asks the node
// holding the nick and waits for its answer.
func (l *link) Private(ev chat.Event) error {
	if l.node.DeliverPrivate(ev) {
		return nil
	}
	if !l.nc.IsConnected() {
		return fmt.Errorf("private message to %s: %w", ev.To, ErrBusDown)
	}
	buf := l.bufs.Get().(*[]byte)
	defer l.bufs.Put(buf)
	*buf = appendEvent((*buf)[:0], &ev, position{})
	l.stats.published.Add(1)
	_, err := l.nc.Request(l.subj.nick+ev.To, *buf, l.opts.Timeout)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("private message to %s: %w", ev.To, chat.ErrNoSuchNick)
	case err != nil:
		return fmt.Errorf("private message to %s: %w", ev.To, err)
	}
	return nil
}

// loop handles what arrives on ch until Close: on data, room events and
// private messages; on ctl, /who and /rooms requests.
func (l *link) loop(ch <-chan *nats.Msg, handle func(*nats.Msg)) {
	defer l.wg.Done()
	for {
		select {
		case m := <-ch:
			handle(m)
		case <-l.quit:
			return
		}
	}
}

func (l *link) handleData(m *nats.Msg) {
	if l.down.Load() && l.nc.IsConnected() {
		// The server routed this to the node's subscription: it has them
		// back. (An event still queued from before the outage, handled
		// while the connection is down, does not count.)
		l.busUp()
	}
	if m.Subject == l.subj.quiesced {
		if len(m.Data) == 8 {
			l.quiesced(binary.BigEndian.Uint64(m.Data))
		}
		return
	}
	ev, pos, err := decodeEvent(m.Data)
	if err != nil {
		l.stats.badEvents.Add(1)
		return
	}
	if ev.Kind == chat.EventPriv {
		// Only the holder answers; a node that got it by a race stays
		// silent rather than contradict the holder.
		if m.Subject == l.subj.nick+ev.To && l.node.DeliverPrivate(ev) {
			m.Respond(nil)
		}
		return
	}
	if self := l.self.Load(); self != 0 && ev.Origin.Node == self {
		// The node's own event, back through another connection: NoEcho
		// keeps the server the node published it on from delivering it
		// back, but not a route. After a failover, the server the node
		// left may still pass what the node published there on to the
		// server it joined, which delivers it to the node's subscription
		// again. The members had it directly, in order, from Publish.
		l.stats.echoes.Add(1)
		return
	}
	if m.Subject != l.subj.room+ev.Room || !l.current(ev.Room, m.Sub) || !l.inSequence(ev.Room, ev.Origin.Node, pos) {
		return
	}
	l.stats.received.Add(1)
	l.node.Deliver(ev)
}

// current reports whether sub is the node's subscription to room now, not
// one it has since dropped: events queued from an old subscription would
// reach members who joined after they were sent.
func (l *link) current(room string, sub *nats.Subscription) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	rs := l.rooms[room]
	return rs != nil && rs.sub == sub
}

// inSequence checks an event against the last one delivered from its
// origin in its room: it reports false for one already delivered, and
// counts and reports the events skipped over.
func (l *link) inSequence(room string, origin uint64, pos position) bool {
	l.seenMu.Lock()
	l.hear(origin)
	origins := l.seen[room]
	if pos.seq == 0 { // the origin's last local member left: forget it
		delete(origins, origin)
		l.seenMu.Unlock()
		return true
	}
	if origins == nil {
		origins = map[uint64]position{}
		l.seen[room] = origins
	}
	last, ok := origins[origin]
	if ok && last.epoch == pos.epoch && pos.seq <= last.seq {
		l.seenMu.Unlock()
		l.stats.duplicates.Add(1)
		return false
	}
	origins[origin] = pos
	l.seenMu.Unlock()
	if ok && last.epoch == pos.epoch && pos.seq > last.seq+1 {
		lost := pos.seq - last.seq - 1
		l.stats.lost.Add(lost)
		l.node.Notice(room, NoticeLost, room, strconv.FormatUint(lost, 10), "events from another server did not arrive")
	}
	return true
}

// maxHeard bounds the origins the node remembers hearing from; past it,
// those not heard from within drainActive are forgotten.
const maxHeard = 4096

// hear notes an event from origin. seenMu is held.
func (l *link) hear(origin uint64) {
	now := time.Now()
	if len(l.heard) >= maxHeard {
		for o, at := range l.heard {
			if now.Sub(at) > drainActive {
				delete(l.heard, o)
				delete(l.done, o)
			}
		}
	}
	l.heard[origin] = now
}

// quiesced notes origin's quiesced marker. Every node that stops says so,
// shared rooms or not (a fork or prefork parent hears one per connection's
// child), so done is bounded on its own: once it holds doneLimit origins,
// those not heard from within drainActive are forgotten. allQuiesced
// consults done only for origins heard from within drainActive, and an
// origin's marker follows its events on the one data goroutine, so an
// origin that matters for a drain is in heard when its marker arrives.
// (One heard of again after its marker, such as the LEAVEs its shutdown
// sends after Drain, says quiesced again when it closes.)
func (l *link) quiesced(origin uint64) {
	l.seenMu.Lock()
	defer l.seenMu.Unlock()
	if len(l.done) >= l.doneLimit {
		now := time.Now()
		for o := range l.done {
			if at, ok := l.heard[o]; !ok || now.Sub(at) > drainActive {
				delete(l.done, o)
			}
		}
		// Prune again only once the map has doubled, so that many recent
		// origins cost amortized constant time per marker.
		l.doneLimit = max(maxHeard, 2*len(l.done))
	}
	l.done[origin] = true
}

// maxReply bounds a /who or /rooms answer, as does the NATS server's max
// payload; the hub cuts its lists to a frame anyway.
const maxReply = 256 << 10

func (l *link) answer(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	var items []string
	if room, ok := strings.CutPrefix(m.Subject, l.subj.who); ok {
		items = l.node.Members(room)
	} else {
		for r, n := range l.node.Rooms() {
			items = append(items, r+":"+strconv.Itoa(n))
		}
	}
	if len(items) == 0 {
		return
	}
	limit := min(maxReply, int(l.maxPayload.Load()))
	var p []byte
	for _, it := range items {
		if len(p)+1+len(it) > limit {
			break
		}
		if len(p) > 0 {
			p = append(p, ' ')
		}
		p = append(p, it...)
	}
	m.Respond(p)
}

// gather asks subject and returns every reply that arrives before none has
// for GatherStall, within GatherMax.
func (l *link) gather(subject string) ([]string, error) {
	if !l.nc.IsConnected() {
		return nil, ErrBusDown
	}
	inbox := l.nc.NewInbox()
	sub, err := l.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := l.nc.PublishRequest(subject, inbox, nil); err != nil {
		return nil, err
	}
	var items []string
	end := time.Now().Add(l.opts.GatherMax)
	for {
		wait := min(l.opts.GatherStall, time.Until(end))
		if wait <= 0 {
			return items, nil
		}
		m, err := sub.NextMsg(wait)
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) {
			return items, nil
		}
		if err != nil {
			return nil, err
		}
		items = append(items, strings.Fields(string(m.Data))...)
	}
}

func (l *link) Who(room string) ([]string, error) {
	remote, err := l.gather(l.subj.who + room)
	if err != nil {
		return nil, fmt.Errorf("who %s: %w", room, err)
	}
	for _, nick := range remote {
		if !chat.ValidNick([]byte(nick)) {
			return nil, fmt.Errorf("who %s: %w", room, errBadEvent)
		}
	}
	return append(l.node.Members(room), remote...), nil
}

func (l *link) Rooms() (map[string]int, error) {
	remote, err := l.gather(l.subj.rooms)
	if err != nil {
		return nil, fmt.Errorf("rooms: %w", err)
	}
	rooms := l.node.Rooms()
	for _, it := range remote {
		name, count, _ := strings.Cut(it, ":")
		n, err := strconv.Atoi(count)
		if err != nil || n < 1 || !chat.ValidRoom([]byte(name)) {
			return nil, fmt.Errorf("rooms: %w", errBadEvent)
		}
		rooms[name] += n
	}
	return rooms, nil
}

func (l *link) ClaimNick(nick string) error { return l.claims.claim(nick) }
func (l *link) ReleaseNick(nick string)     { l.claims.release(nick) }
func (l *link) NextGuest() (uint64, error)  { return l.claims.nextGuest() }

// Waits reports true: claims, subscriptions, private messages, /who and
// /rooms wait on NATS, so the hub offloads them (chat.Waiter).
func (l *link) Waits() bool { return true }

// drainActive is how recently an origin must have sent an event for a
// draining node to wait for its quiesced marker.
const drainActive = 2 * time.Second

// Drain is the node's part of a shutdown, once its server has stopped
// reading. It flushes what the node published and says so on
// <prefix>.quiesced; that marker follows the node's last events on its
// connection, so a node that receives it has received them all. It then
// waits, until deadline at the latest, for the queue to empty and for
// either of:
//
//   - every origin heard from within the last 2 s has sent its marker:
//     exact when the whole chat stops at once (a fork or prefork parent
//     stopping its children);
//   - DrainPatience has passed and nothing has arrived for DrainQuiet:
//     for origins that are not shutting down.
func (l *link) Drain(deadline time.Time) {
	start := time.Now()
	if wait := time.Until(deadline); wait > 0 && l.nc.IsConnected() {
		l.sayQuiesced()
		l.nc.FlushTimeout(min(wait, l.opts.Timeout))
	}
	const tick = 10 * time.Millisecond
	for {
		if len(l.data) == 0 {
			quietFor := time.Since(time.Unix(0, l.lastArrival.Load()))
			if l.allQuiesced(start) || (quietFor >= l.opts.DrainQuiet && time.Since(start) >= l.opts.DrainPatience) {
				return
			}
		}
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		time.Sleep(min(tick, left))
	}
}

// sayQuiesced tells the other nodes that this one publishes no more room
// events, if it ever published one.
func (l *link) sayQuiesced() {
	if self := l.self.Load(); self != 0 {
		l.nc.Publish(l.subj.quiesced, binary.BigEndian.AppendUint64(nil, self))
	}
}

// allQuiesced reports whether every origin heard from within drainActive
// before start has sent its quiesced marker.
func (l *link) allQuiesced(start time.Time) bool {
	l.seenMu.Lock()
	defer l.seenMu.Unlock()
	for o, at := range l.heard {
		if start.Sub(at) <= drainActive && !l.done[o] {
			return false
		}
	}
	return true
}

// Close releases the node's nicks, unsubscribes and closes the connection.
func (l *link) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	l.claims.close()
	if l.nc.IsConnected() {
		l.sayQuiesced() // a node that stops without a shutdown (a fork child whose client left)
		l.nc.FlushTimeout(l.opts.Timeout)
	}
	l.nc.Close()
	close(l.quit)
	l.wg.Wait()
	return nil
}
