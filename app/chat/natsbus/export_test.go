package natsbus

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
