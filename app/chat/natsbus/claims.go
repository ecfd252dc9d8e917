package natsbus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tcplab/tcplab/app/chat"
)

// claims are a node's nicks, claimed in a JetStream key-value bucket: the
// key is the nick, the value the node's id. KeyValue.Create succeeds only
// if the key has no value, and JetStream orders every write to a key, so
// of two nodes claiming one nick, one gets it and the other ErrKeyExists.
// The bucket's TTL expires a claim that is not renewed; the node renews
// each of its claims every TTL/3 with Update at the revision it holds.
type claims struct {
	l     *link
	js    jetstream.JetStream
	kv    jetstream.KeyValue
	ttl   time.Duration // the bucket's, which may predate this node's options
	value []byte

	// mu guards held, claiming and closed, and is held across renewing
	// one nick so that a release always deletes the newest revision.
	mu   sync.Mutex
	held map[string]*claim
	// claiming are the nicks a claim of this node is under way for: a
	// key holding this node's own value is adopted only by a claim that
	// knows no other local one has or is taking the nick.
	claiming map[string]bool
	closed   bool
	done     chan struct{}
}

type claim struct {
	rev uint64             // the revision of the key this node wrote last
	sub *nats.Subscription // private messages to the nick
}

// openClaims binds the bucket and the guest stream, creating them if this
// is the first node.
func openClaims(ctx context.Context, l *link) (*claims, error) {
	js, err := jetstream.New(l.nc)
	if err != nil {
		return nil, fmt.Errorf("natsbus: %w", err)
	}
	kv, ttl, err := ensureStores(ctx, js, l)
	if err != nil {
		return nil, err
	}
	return &claims{
		l:     l,
		js:    js,
		kv:    kv,
		ttl:   ttl,
		value: strconv.AppendUint(nil, rand.Uint64(), 16), // names the node in the bucket
		held:  map[string]*claim{},
		done:  make(chan struct{}),

		claiming: map[string]bool{},
	}, nil
}

// ensureStores binds the nick bucket and the guest stream, making each
// that does not exist, and returns the bucket and its TTL.
func ensureStores(ctx context.Context, js jetstream.JetStream, l *link) (jetstream.KeyValue, time.Duration, error) {
	o := l.opts
	kv, err := js.KeyValue(ctx, o.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      o.Bucket,
			Description: "tcplab chat: nick claims",
			History:     1,
			TTL:         o.ClaimTTL,
			Storage:     jetstream.MemoryStorage,
			Replicas:    o.Replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) { // another node made it first
			kv, err = js.KeyValue(ctx, o.Bucket)
		}
	}
	if err != nil {
		return nil, 0, fmt.Errorf("natsbus: nick claims need JetStream on the NATS servers (nats-server -js): bucket %s: %w", o.Bucket, err)
	}
	status, err := kv.Status(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("natsbus: bucket %s: %w", o.Bucket, err)
	}
	ttl := status.TTL()
	if ttl <= 0 {
		return nil, 0, fmt.Errorf("natsbus: bucket %s has no TTL, so a dead node's nicks would never be freed", o.Bucket)
	}
	stream := o.Bucket + "_guests"
	if _, err := js.Stream(ctx, stream); errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        stream,
			Description: "tcplab chat: guest numbers (the sequence)",
			Subjects:    []string{l.subj.guests},
			Storage:     jetstream.MemoryStorage,
			MaxMsgs:     1,
			Replicas:    o.Replicas,
		})
		if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil, 0, fmt.Errorf("natsbus: stream %s: %w", stream, err)
		}
	} else if err != nil {
		return nil, 0, fmt.Errorf("natsbus: stream %s: %w", stream, err)
	}
	return kv, ttl, nil
}

// retry runs op, and once more after remaking the bucket and the stream
// if no stream answered: they live in memory, so a NATS cluster that
// restarted whole has lost them.
func (c *claims) retry(ctx context.Context, op func() error) error {
	err := op()
	if !errors.Is(err, jetstream.ErrNoStreamResponse) {
		return err
	}
	if _, _, err := ensureStores(ctx, c.js, c.l); err != nil {
		return err
	}
	return op()
}

func (c *claims) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.l.opts.Timeout)
}

// claim reserves nick. The subscription for private messages is made
// first: the claim's answer comes back on the same connection, so once it
// has, the server has the subscription too.
//
// A key that holds this node's own value, though the node holds no claim
// on it, is a write of this node's whose answer was lost (a claim or a
// renewal that timed out after JetStream applied it, a release whose
// delete did not arrive): the claim adopts it rather than wait for it to
// expire. A nick another claim of this node is taking is taken.
func (c *claims) claim(nick string) error {
	l := c.l
	if !l.nc.IsConnected() {
		return fmt.Errorf("claim %s: %w", nick, ErrBusDown)
	}
	c.mu.Lock()
	if c.held[nick] != nil || c.claiming[nick] {
		c.mu.Unlock()
		return fmt.Errorf("claim %s: %w", nick, chat.ErrNickTaken)
	}
	c.claiming[nick] = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.claiming, nick)
		c.mu.Unlock()
	}()
	sub, err := l.nc.ChanSubscribe(l.subj.nick+nick, l.data)
	if err != nil {
		return fmt.Errorf("claim %s: %w", nick, err)
	}
	ctx, cancel := c.ctx()
	defer cancel()
	rev, err := c.create(ctx, nick)
	if err != nil {
		sub.Unsubscribe()
		if errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("claim %s: %w", nick, chat.ErrNickTaken)
		}
		return fmt.Errorf("claim %s: %w", nick, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		sub.Unsubscribe()
		c.kv.Delete(ctx, nick, jetstream.LastRevision(rev))
		return fmt.Errorf("claim %s: %w", nick, chat.ErrBusClosed)
	}
	c.held[nick] = &claim{rev: rev, sub: sub}
	return nil
}

// maxAdopt bounds create's attempts when the key changes under it.
const maxAdopt = 3

// create writes a claim on nick that the node does not hold: it creates
// the key, or, if the key holds this node's own value (see claim), writes
// it again at the revision it has. It returns the revision written, or
// jetstream.ErrKeyExists if another node holds the nick.
func (c *claims) create(ctx context.Context, nick string) (uint64, error) {
	for range maxAdopt {
		var rev uint64
		err := c.retry(ctx, func() (err error) {
			rev, err = c.kv.Create(ctx, nick, c.value)
			return err
		})
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return rev, err
		}
		own, err := c.ownRevision(ctx, nick)
		if err != nil {
			return 0, err
		}
		if own == 0 {
			// Not found, though Create found it: gone meanwhile, or a
			// replica that has not applied it yet answered the read (seen
			// in a 3-server cluster). Either way someone holds or held it
			// a moment ago: taken, as before adoption existed.
			return 0, jetstream.ErrKeyExists
		}
		rev, err = c.kv.Update(ctx, nick, c.value, own)
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return rev, err
		}
		// The key changed since it was read: it expired, was deleted or
		// was taken. Start over.
	}
	return 0, fmt.Errorf("the key changed %d times while it was being claimed", maxAdopt)
}

// ownRevision reads nick's key after a write found it taken. It returns
// the key's revision if it holds this node's own value, 0 and nil if the
// key is gone (expired or deleted meanwhile), and ErrKeyExists if it holds
// another node's.
func (c *claims) ownRevision(ctx context.Context, nick string) (uint64, error) {
	e, err := c.kv.Get(ctx, nick)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("read the claim: %w", err)
	case !bytes.Equal(e.Value(), c.value):
		return 0, jetstream.ErrKeyExists
	}
	return e.Revision(), nil
}

// release gives nick up. It unsubscribes before deleting the claim, so the
// nick's next holder never shares its private messages with this node. A
// node that is disconnected leaves the claim to expire.
func (c *claims) release(nick string) {
	cl := take(&c.mu, c.held, nick)
	if cl == nil {
		return
	}
	cl.sub.Unsubscribe()
	if c.l.nc.IsConnected() {
		ctx, cancel := c.ctx()
		defer cancel()
		c.kv.Delete(ctx, nick, jetstream.LastRevision(cl.rev))
	}
}

// nextGuest takes the next number from the guest stream's sequence.
func (c *claims) nextGuest() (uint64, error) {
	if !c.l.nc.IsConnected() {
		return 0, fmt.Errorf("guest number: %w", ErrBusDown)
	}
	ctx, cancel := c.ctx()
	defer cancel()
	var seq uint64
	err := c.retry(ctx, func() error {
		ack, err := c.js.Publish(ctx, c.l.subj.guests, nil)
		if err == nil {
			seq = ack.Sequence
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("guest number: %w", err)
	}
	return seq, nil
}

// renewLoop renews the node's claims every TTL/3 until close.
func (c *claims) renewLoop() {
	defer c.l.wg.Done()
	t := time.NewTicker(c.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			c.renewAll()
		}
	}
}

func (c *claims) renewAll() {
	c.mu.Lock()
	nicks := make([]string, 0, len(c.held))
	for n := range c.held {
		nicks = append(nicks, n)
	}
	c.mu.Unlock()
	for _, nick := range nicks {
		select {
		case <-c.done:
			return
		default:
		}
		if !c.l.nc.IsConnected() {
			return
		}
		c.renew(nick)
	}
}

// renew writes nick's claim again. If the claim's revision is not the
// key's any more, it claims the nick anew (create): the claim expired
// meanwhile (a long outage), or the bucket is gone (the cluster
// restarted), or an earlier write of this node's own was applied though
// its answer was lost (a renewal that timed out), which create adopts. If
// another node has the nick by then, this node gives the claim up and
// counts a conflict: its client keeps the nick locally, but private
// messages to it go to the other holder. Any other failure (a timeout)
// leaves the claim to the next renewal.
func (c *claims) renew(nick string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl := c.held[nick]
	if cl == nil {
		return
	}
	ctx, cancel := c.ctx()
	defer cancel()
	rev, err := c.kv.Update(ctx, nick, c.value, cl.rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrNoStreamResponse) {
		rev, err = c.create(ctx, nick)
		if errors.Is(err, jetstream.ErrKeyExists) {
			c.l.stats.nickConflicts.Add(1)
			c.l.opts.Logger.Warn("chat bus: a nick's claim expired and another node took it", "nick", nick)
			delete(c.held, nick)
			cl.sub.Unsubscribe()
			return
		}
	}
	if err == nil {
		cl.rev = rev
	}
}

// close stops renewing and releases every claim, within one Timeout; the
// claims left then expire.
func (c *claims) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	close(c.done)
	held := c.held
	c.held = map[string]*claim{}
	c.mu.Unlock()
	ctx, cancel := c.ctx()
	defer cancel()
	for nick, cl := range held {
		cl.sub.Unsubscribe()
		if ctx.Err() == nil && c.l.nc.IsConnected() {
			c.kv.Delete(ctx, nick, jetstream.LastRevision(cl.rev))
		}
	}
}
