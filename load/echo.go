package load

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/tcplab/tcplab/app/chat"
	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/internal/backoff"
	"github.com/tcplab/tcplab/internal/sleep"
)

// runEcho runs the echo protocol on every slot; see runSlots.
func (r *run) runEcho() {
	r.runSlots(func(i int) exchanger { return r.newEchoExchanger(i) })
}

// exchanger is a slot's protocol: echo, or the work protocol (work.go). A
// slot's exchanger is used by one goroutine at a time.
type exchanger interface {
	// roundTrip sends one request on c and checks its reply, returning
	// the bytes to count. first is set for a new connection's proving
	// round trip.
	roundTrip(c *conn, first bool) (size int, err error)
	// record adds a completed round trip, as batch.add does.
	record(at, fromDue, fromSent time.Duration, size int, first bool)
	// flush flushes what record batched.
	flush()
}

// runSlots runs one goroutine per connection slot, each with the
// exchanger newEx returns for it. A slot holds one connection at a time:
// for the whole run, or for PerConn messages and then a new one.
//
// A long-lived connection stays open, idle, after the deadline until
// every slot's first connection has succeeded or failed: closing it at
// the deadline would free a server that serves a bounded number of
// clients at once (seq, pool) for the clients still waiting, and they
// would count as served although no server that kept its clients would
// have served them.
func (r *run) runSlots(newEx func(i int) exchanger) {
	var wg, connecting sync.WaitGroup
	allTried := make(chan struct{})
	if r.cfg.PerConn == 0 {
		connecting.Add(r.cfg.Conns)
	}
	for i := range r.cfg.Conns {
		wg.Go(func() { r.slot(i, newEx(i), &connecting, allTried) })
	}
	if r.cfg.PerConn == 0 {
		connecting.Wait()
	}
	close(allTried)
	wg.Wait()
}

// echoExchanger sends a message of Size bytes and checks its echo.
type echoExchanger struct {
	msg, got []byte
	b        *batch
}

func (r *run) newEchoExchanger(i int) *echoExchanger {
	msg := make([]byte, r.cfg.Size)
	pattern := fmt.Appendf(nil, "conn %d ", i)
	for j := range msg {
		msg[j] = pattern[j%len(pattern)]
	}
	return &echoExchanger{msg: msg, got: make([]byte, r.cfg.Size), b: r.rec.batch(i)}
}

func (e *echoExchanger) roundTrip(c *conn, _ bool) (int, error) {
	return len(e.msg), roundTrip(c, e.msg, e.got)
}

func (e *echoExchanger) record(at, fromDue, fromSent time.Duration, size int, _ bool) {
	e.b.add(at, fromDue, fromSent, size)
}

func (e *echoExchanger) flush() { e.b.flush() }

// pacer yields the times an open-loop slot's messages are due, sleeps
// until them, and records how late each went out (late.go). A nil pacer
// is closed loop: nothing is due ahead of time. Make one with run.pace.
type pacer struct {
	due      time.Time
	interval time.Duration
	timer    sleep.Timer
	late     lateBatch
}

// newPacer returns slot i's pacer. Together the slots' schedules make
// one of Rate per second from the start: slot i's messages are due at
// i/Rate, (i+Conns)/Rate, (i+2*Conns)/Rate, ... seconds after the slot
// starts. (The proving echo is sent on connecting, outside the schedule.)
func (r *run) newPacer(i int) *pacer {
	if r.cfg.Rate <= 0 {
		return nil
	}
	interval := time.Duration(float64(r.cfg.Conns) / r.cfg.Rate * float64(time.Second))
	phase := time.Duration(float64(i) / r.cfg.Rate * float64(time.Second))
	return r.pace(r.slotStart(i).Add(phase), interval, i)
}

// next returns the next due time and waits for it; ok is false once the
// run's deadline or ctx stops the slot. It records the message's send
// lateness: from the later of its due time and this call to the return.
func (p *pacer) next(r *run) (due time.Time, ok bool) {
	ready := time.Now()
	p.due = p.due.Add(p.interval)
	if !p.due.Before(r.deadline) {
		return p.due, false
	}
	if d := p.due.Sub(ready); d > 0 {
		if !p.timer.Sleep(d, r.ctx.Done()) {
			return p.due, false
		}
		ready = p.due
	}
	if r.ctx.Err() != nil {
		return p.due, false
	}
	p.late.add(time.Since(ready))
	return p.due, true
}

// stop stops the timer and flushes the lateness recorded.
func (p *pacer) stop() {
	if p == nil {
		return
	}
	p.timer.Stop()
	p.late.flush()
}

// slot runs slot i with its exchanger. Long-lived (PerConn 0), it calls
// connecting.Done once its connection has succeeded or failed, and holds
// a connection that succeeded until allTried is closed.
func (r *run) slot(i int, ex exchanger, connecting *sync.WaitGroup, allTried <-chan struct{}) {
	defer ex.flush()
	var tried sync.Once
	if r.cfg.PerConn == 0 {
		defer tried.Do(connecting.Done)
	}
	if !r.sleepUntil(r.slotStart(i)) {
		return
	}
	p := r.newPacer(i)
	defer p.stop()
	var bo backoff.Backoff
	for first := true; first || r.cfg.PerConn > 0 && time.Now().Before(r.deadline) && r.ctx.Err() == nil; first = false {
		c, err := r.connectSlot(i, ex)
		if err != nil {
			if r.ctx.Err() != nil {
				return // cancelled: not the server's failure
			}
			r.fail(err, false)
			if r.cfg.PerConn > 0 {
				wait, _ := bo.Fail()
				r.sleepUntil(time.Now().Add(wait))
			}
			continue
		}
		bo.Reset()
		r.succeeded()
		if r.cfg.PerConn == 0 {
			tried.Do(connecting.Done)
		}
		err = r.slotLoop(c, ex, p)
		if r.cfg.PerConn == 0 && (err == nil || r.ended(err)) {
			select { // hold the connection; see runSlots
			case <-allTried:
			case <-r.ctx.Done():
			}
		}
		c.Close()
		if err != nil && !r.ended(err) {
			r.fail(err, true)
		}
	}
}

// conn is a connection the run's ctx can interrupt.
type conn struct {
	net.Conn
	r    *run
	stop func() bool
}

func (c *conn) Close() error {
	c.stop()
	return c.Conn.Close()
}

// setDeadline sets the read and write deadline, keeping it in the past
// once ctx is cancelled.
func (c *conn) setDeadline(t time.Time) {
	c.SetDeadline(t)
	if c.r.ctx.Err() != nil {
		c.SetDeadline(time.Unix(1, 0))
	}
}

// dial connects slot i's next connection; the caller then has until limit
// for the first round trip.
func (r *run) dial(i int) (c *conn, limit time.Time, err error) {
	limit = time.Now().Add(r.cfg.ConnectTimeout)
	ctx, cancel := context.WithDeadline(r.ctx, limit)
	defer cancel()
	nc, err := dialer(r.src, i).DialContext(ctx, "tcp", r.cfg.Addr)
	if err != nil {
		return nil, limit, err
	}
	c = &conn{Conn: nc, r: r}
	c.stop = r.watch(nc)
	c.setDeadline(limit)
	return c, limit, nil
}

// connectSlot dials and proves the connection with one round trip within
// the connect timeout. The proving round trip counts as a message.
func (r *run) connectSlot(i int, ex exchanger) (*conn, error) {
	c, _, err := r.dial(i)
	if err != nil {
		return nil, err
	}
	sent := time.Now()
	size, err := ex.roundTrip(c, true)
	if err != nil {
		c.Close()
		return nil, err
	}
	now := time.Now()
	d := now.Sub(sent)
	ex.record(now.Sub(r.start), d, d, size, true)
	return c, nil
}

// slotLoop sends messages until the deadline, or until the connection has
// carried PerConn of them (the proving one included).
func (r *run) slotLoop(c *conn, ex exchanger, p *pacer) error {
	c.setDeadline(r.deadline)
	for n := 1; r.cfg.PerConn == 0 || n < r.cfg.PerConn; n++ {
		var due time.Time
		if p != nil {
			var ok bool
			if due, ok = p.next(r); !ok {
				return nil
			}
		} else if !time.Now().Before(r.deadline) {
			return nil
		}
		sent := time.Now()
		if p == nil {
			due = sent
		}
		size, err := ex.roundTrip(c, false)
		if err != nil {
			return err
		}
		now := time.Now()
		ex.record(now.Sub(r.start), now.Sub(due), now.Sub(sent), size, false)
	}
	return nil
}

func roundTrip(c net.Conn, msg, got []byte) error {
	if _, err := c.Write(msg); err != nil {
		return err
	}
	n, err := io.ReadFull(c, got)
	if err == nil && bytes.Equal(got, msg) {
		return nil
	}
	return echoFailure(msg, got[:n], err)
}

// echoFailure explains a round trip that did not bring msg back: got is
// what came back before err (nil if the echo was whole but different).
// What came back is quoted; a chat server's greeting is named as such,
// since a chat server answers an echo client with its HELLO, then
// waits for a frame that never ends or refuses a length header that
// makes no sense.
func echoFailure(msg, got []byte, err error) error {
	if k, ok := chat.GreetingFraming(got); ok {
		try := "--app chat"
		if k != frame.Length {
			try += " --framing " + string(k)
		}
		return fmt.Errorf("%w: the server greeted with %q: it is a chat server; try %s", errMismatch, clip(got), try)
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: sent %q, got %q", errMismatch, clip(msg), clip(got))
}
