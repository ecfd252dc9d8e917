// Package admit decides, from the peer's address alone, whether a new
// connection is let in: at most MaxPerIP connections open at once per
// address, and new ones at no more than Rate a second per address (a token
// bucket of Burst). Every model calls it as it accepts, before the handler
// sees the connection, and gives the slot back when the connection ends.
//
// An IPv4 address is counted on its own; an IPv6 address is counted by its
// /64 prefix, since one host usually holds a whole /64. Loopback addresses
// are exempt unless Options.LimitLoopback is set, so the lab's benchmarks
// (all on loopback) pay nothing for it.
//
// Memory is bounded: an address is tracked while it has connections open,
// and afterwards only until its token bucket has refilled (or the table is
// large, whichever comes first).
package admit

import (
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcplab/tcplab/handler"
)

// Options are the per-address limits.
type Options struct {
	// MaxPerIP caps the connections open at once from one address; past it
	// a new one is refused with handler.ErrTooManyConns. 0 or less: no cap.
	MaxPerIP int
	// Rate is how many new connections an address may open a second, on
	// average; past it they are refused with handler.ErrConnRate. 0 or
	// less: no rate limit.
	Rate float64
	// Burst is how many new connections an address may open at once
	// before Rate applies. Values below 1 count as 1.
	Burst int
	// LimitLoopback applies the limits to loopback addresses too.
	LimitLoopback bool
}

// minSweep is the table size below which idle entries are left alone.
const minSweep = 4096

// Limiter applies Options. A nil *Limiter admits everything. It is safe for
// concurrent use.
type Limiter struct {
	o     Options
	burst float64

	mu      sync.Mutex
	peers   map[netip.Addr]*peer
	sweepAt int
}

// peer is one address's state.
type peer struct {
	open   int
	tokens float64
	last   time.Time
}

// New returns a Limiter, or nil if o limits nothing.
func New(o Options) *Limiter {
	if o.MaxPerIP <= 0 && o.Rate <= 0 {
		return nil
	}
	return &Limiter{
		o:       o,
		burst:   float64(max(1, o.Burst)),
		peers:   map[netip.Addr]*peer{},
		sweepAt: minSweep,
	}
}

// Key returns the address a connection from a is counted under: a itself
// for IPv4 (IPv4-mapped IPv6 included), its /64 prefix for IPv6.
func Key(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, err := a.WithZone("").Prefix(64)
		if err == nil {
			return p.Addr()
		}
	}
	return a
}

// Exempt reports whether connections from a are not limited.
func (l *Limiter) Exempt(a netip.Addr) bool {
	return l == nil || !a.IsValid() || (!l.o.LimitLoopback && a.Unmap().IsLoopback())
}

// Admit checks a new connection from a. It returns nil, having counted the
// connection (give it back with Release when it ends), or the reason it is
// refused: handler.ErrTooManyConns or handler.ErrConnRate. A refused
// connection is not counted.
func (l *Limiter) Admit(a netip.Addr) error {
	if l.Exempt(a) {
		return nil
	}
	k := Key(a)
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.peers[k]
	if p == nil {
		if len(l.peers) >= l.sweepAt {
			l.sweep(now)
		}
		p = &peer{tokens: l.burst, last: now}
		l.peers[k] = p
	}
	if l.o.MaxPerIP > 0 && p.open >= l.o.MaxPerIP {
		return handler.ErrTooManyConns
	}
	if l.o.Rate > 0 {
		l.refill(p, now)
		if p.tokens < 1 {
			return handler.ErrConnRate
		}
		p.tokens--
	}
	p.open++
	return nil
}

// Release gives back the slot of a connection from a that Admit let in.
func (l *Limiter) Release(a netip.Addr) {
	if l.Exempt(a) {
		return
	}
	k := Key(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.peers[k]
	if p == nil || p.open == 0 {
		return
	}
	if p.open--; p.open == 0 && l.o.Rate <= 0 {
		delete(l.peers, k) // nothing to remember about it
	}
}

// Tracked returns how many addresses the limiter holds state for.
func (l *Limiter) Tracked() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.peers)
}

// refill adds the tokens earned since p.last. Called with mu held.
func (l *Limiter) refill(p *peer, now time.Time) {
	if now.After(p.last) {
		p.tokens = min(l.burst, p.tokens+now.Sub(p.last).Seconds()*l.o.Rate)
		p.last = now
	}
}

// sweep forgets addresses with no connection open whose bucket has
// refilled, which are no different from addresses never seen. If that
// frees too little (a flood from many addresses), it forgets every
// address with no connection open, rate history and all. The next sweep
// waits until the table has doubled, so sweeping costs O(1) per Admit
// over time. Called with mu held.
func (l *Limiter) sweep(now time.Time) {
	for k, p := range l.peers {
		if p.open == 0 {
			l.refill(p, now)
			if p.tokens >= l.burst {
				delete(l.peers, k)
			}
		}
	}
	if len(l.peers) >= l.sweepAt*3/4 {
		for k, p := range l.peers {
			if p.open == 0 {
				delete(l.peers, k)
			}
		}
	}
	l.sweepAt = max(minSweep, 2*len(l.peers))
}

// Refusal reasons, as metric labels.
const (
	ReasonServerFull   = "server-full"  // a model's or the handler's cap (handler.ErrServerFull)
	ReasonTooManyConns = "per-ip-limit" // handler.ErrTooManyConns
	ReasonConnRate     = "per-ip-rate"  // handler.ErrConnRate
	ReasonShutdown     = "shutdown"     // queued when shutdown began (handler.ErrShutdown)
	ReasonOther        = "other"
)

// reasons lists every label, in Refusals' order.
var reasons = [...]string{ReasonServerFull, ReasonTooManyConns, ReasonConnRate, ReasonShutdown, ReasonOther}

// Reasons returns every refusal reason label.
func Reasons() []string { return reasons[:] }

// Reason returns the label of a refusal reason.
func Reason(err error) string { return reasons[reasonIndex(err)] }

func reasonIndex(err error) int {
	switch {
	case errors.Is(err, handler.ErrServerFull):
		return 0
	case errors.Is(err, handler.ErrTooManyConns):
		return 1
	case errors.Is(err, handler.ErrConnRate):
		return 2
	case errors.Is(err, handler.ErrShutdown):
		return 3
	}
	return 4
}

// Refusals counts refused connections by reason. The zero value is ready
// and safe for concurrent use.
type Refusals struct {
	n [len(reasons)]atomic.Uint64
}

// Add counts one refusal for reason.
func (r *Refusals) Add(reason error) { r.n[reasonIndex(reason)].Add(1) }

// Snapshot returns the counts by reason label, every reason included.
func (r *Refusals) Snapshot() map[string]uint64 {
	m := make(map[string]uint64, len(reasons))
	for i, name := range reasons {
		m[name] = r.n[i].Load()
	}
	return m
}
