package natsbus

// IsMetaLeader reports whether the server leads its cluster's JetStream
// meta group.
func (e *Embedded) IsMetaLeader() bool { return e.srv.JetStreamIsLeader() }
