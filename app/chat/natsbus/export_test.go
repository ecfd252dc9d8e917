package natsbus

import "github.com/tcplab/tcplab/app/chat"

// IsMetaLeader reports whether the server leads its cluster's JetStream
// meta group.
func (e *Embedded) IsMetaLeader() bool { return e.srv.JetStreamIsLeader() }

// Interest is how many subscriptions the server knows for subject: its
// own clients' and, one per server, those routed from the rest of the
// cluster.
func (e *Embedded) Interest(subject string) int { return e.srv.GlobalAccount().Interest(subject) }

// Crash cuts the node off as a dying process would be: its connection
// closes, and its claims are neither renewed nor released.
func (n *Net) Crash() {
	l := n.link
	c := l.claims
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.done)
		c.held = map[string]*claim{}
	}
	c.mu.Unlock()
	l.nc.Close()
}

// RewriteClaim writes nick's key in the claims bucket with this node's own
// value behind its claims' back, as a write of the node's whose answer was
// lost would have (a claim or renewal that timed out after JetStream
// applied it): the key's revision moves past the one the node holds, if
// it holds one.
func (n *Net) RewriteClaim(nick string) error {
	c := n.link.claims
	ctx, cancel := c.ctx()
	defer cancel()
	_, err := c.kv.Put(ctx, nick, c.value)
	return err
}

// RenewClaims renews the node's claims now, as its renewal loop does every
// ClaimTTL/3.
func (n *Net) RenewClaims() { n.link.claims.renewAll() }

// EventText is the text of the event a NATS message payload carries: ""
// for an event without one (JOIN, LEAVE) or a payload that does not
// decode.
func EventText(p []byte) string {
	ev, _, err := decodeEvent(p)
	if err != nil {
		return ""
	}
	return string(ev.Text)
}

// EventPayload is ev as a NATS message payload, at sequence number seq of
// a fixed epoch.
func EventPayload(ev chat.Event, seq uint64) []byte {
	return appendEvent(nil, &ev, position{epoch: 1, seq: seq})
}
