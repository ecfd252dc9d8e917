package load

import (
	"fmt"
	"sync"
	"time"
)

// runIdle is the idle run (Config.Idle): what a server pays to hold many
// connections that say nothing. It opens every connection (at ConnectRate,
// or all at once), leaves them idle for Duration, calls OnIdle, then has
// each complete one round trip within ConnectTimeout. Only that round trip
// proves the server holds the connection: the kernel completes handshakes
// no accept() takes, so a connection counts as a success only once it is
// answered. The connections close together at the end, so a server that
// holds a bounded number of them (seq, pool) is not freed for the others
// while they wait.
func (r *run) runIdle() {
	n := r.cfg.Conns
	conns := make([]*conn, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if !r.sleepUntil(r.slotStart(i)) {
				return
			}
			c, _, err := r.dial(i)
			if err != nil {
				if r.ctx.Err() == nil {
					r.fail(err, false)
				}
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if !r.sleepUntil(time.Now().Add(r.cfg.Duration)) {
		return
	}
	if r.cfg.OnIdle != nil {
		r.cfg.OnIdle()
	}
	// The rates' window is the round trips' own time: from now to the
	// last answer.
	r.sendStart = time.Now()
	r.deadline = r.sendStart
	limit := r.sendStart.Add(r.cfg.ConnectTimeout)
	for i, c := range conns {
		if c == nil {
			continue
		}
		wg.Go(func() {
			b := r.rec.batch(i)
			defer b.flush()
			msg := fmt.Appendf(nil, "idle %d\n", i)
			c.setDeadline(limit)
			sent := time.Now()
			if err := roundTrip(c, msg, make([]byte, len(msg))); err != nil {
				if r.ctx.Err() == nil {
					r.fail(err, false)
				}
				return
			}
			now := time.Now()
			b.add(now.Sub(r.start), now.Sub(sent), now.Sub(sent), len(msg))
			r.succeeded()
		})
	}
	wg.Wait()
}
