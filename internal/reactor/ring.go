package reactor

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tcplab/tcplab/internal/uring"
)

// This file is the io_uring kernel interface of a loop (the uring model).
// Everything else (connections, Data on the loop, the outbound buffer,
// backpressure, timers, the task queue and its eventfd, refusal, the
// two-phase shutdown) is the same code as the epoll loops'; only how the
// loop talks to the kernel differs:
//
//   - One io_uring instance per loop, created disabled in New (so an
//     unavailable io_uring is an error there) and enabled by the loop's
//     locked thread, which is then its only submitter (SINGLE_ISSUER,
//     DEFER_TASKRUN: completion work runs only inside the loop's own
//     io_uring_enter, batched).
//   - Each pass is one io_uring_enter: it submits everything queued since
//     the last pass and waits for completions (or the next timer).
//   - Accept is multishot, re-armed when a completion says it ended.
//   - Receive is a multishot recv with buffer select: the kernel picks a
//     buffer from the loop's registered buffer ring; the loop hands the
//     bytes to Data and gives the buffer back at once.
//   - Send copies the outbound batch into a slot of an mmap'd arena and
//     sends from there: the kernel never reads Go memory after the call
//     that submitted it. A short send is resubmitted from where it stopped.
//     The arena grows by another mapping when every slot is taken, so a
//     send that stalls (a peer that does not read) never holds up another
//     connection's.
//   - Close is a submission too, after cancelling the connection's
//     outstanding operations.
//   - Wake-ups: an eventfd read kept armed in the ring; posters write the
//     eventfd only when the loop sleeps, as with epoll.
//
// Operations are identified by user data holding an opcode and a loop-local
// connection id (never a Go pointer). An id is reused only after every
// operation that carried it has completed.

// Ring sizes.
const (
	ringEntries         = 1024 // submission queue entries per loop
	ringCQEntries       = 8192 // completion queue entries per loop
	defaultRingBuffers  = 1024
	defaultRingBufSize  = 4 << 10
	defaultSendSlots    = 1024
	defaultSendSlotSize = 16 << 10
	bufGroup            = 0
	// ringDrainLimit bounds the wait for cancelled operations to complete
	// when a loop stops.
	ringDrainLimit = 2 * time.Second
)

// Operation codes in the top byte of user data.
const (
	opWake uint64 = iota + 1
	opAccept
	opRecv
	opSend
	opCancel
	opClose
)

func userData(op uint64, id int) uint64 { return op<<56 | uint64(uint32(id)) }

// RingOptions sizes an io_uring loop's memory. Zero fields take defaults.
type RingOptions struct {
	// Buffers is the number of provided receive buffers per loop, a power
	// of two (default 1024). A receive that finds none ends, and the loop
	// re-arms it once the pass has given buffers back.
	Buffers int
	// BufferSize is each receive buffer's size (default 4 KiB, at most the
	// chunk a Data call may get).
	BufferSize int
	// SendSlots is the number of send slots in each of a loop's send
	// mappings (default 1024): a connection with a send in flight holds
	// one. A loop starts with one mapping and maps another when every
	// slot is taken, so no connection waits for a slot (unless mapping
	// fails: then it waits for one to be freed).
	SendSlots int
	// SendSlotSize is each send slot's size (default 16 KiB): a larger
	// batch is sent a slot at a time.
	SendSlotSize int
}

// withDefaults fills in zero fields, and checks the result; a receive
// buffer holds at most chunk.
func (r RingOptions) withDefaults(chunk int) (RingOptions, error) {
	if r.Buffers < 0 || r.BufferSize < 0 || r.SendSlots < 0 || r.SendSlotSize < 0 {
		return r, fmt.Errorf("reactor: ring sizes %+v: must not be negative", r)
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&r.Buffers, defaultRingBuffers)
	def(&r.BufferSize, defaultRingBufSize)
	def(&r.SendSlots, defaultSendSlots)
	def(&r.SendSlotSize, defaultSendSlotSize)
	r.BufferSize = min(r.BufferSize, chunk)
	if r.Buffers > 1<<15 || r.Buffers&(r.Buffers-1) != 0 {
		return r, fmt.Errorf("reactor: ring buffers %d: want a power of two up to 32768", r.Buffers)
	}
	return r, nil
}

// ringIO is a loop's io_uring state. Only the loop's goroutine touches it.
type ringIO struct {
	r     *uring.Ring
	bufs  *uring.BufRing // receive buffers
	arena *sendArena     // send slots
	wake  []byte         // 8 mmap'd bytes the eventfd read fills

	cqes     []uring.CQE
	conns    []*conn // by id
	freeIDs  []int32
	inflight int // operations whose last completion is still to come

	// now is the loop's clock, read once per pass.
	now time.Duration
	// sends holds connections whose send was queued since the last
	// io_uring_enter; checking, those whose send that enter submitted. A
	// send still in flight after the enter that submitted it did not
	// complete at once: the socket is full.
	sends, checking []*conn

	wakeArmed bool
	accepting []int   // listeners with an accept armed
	starved   []*conn // receives that ended for want of a buffer
	slotWait  []*conn // connections waiting for a send slot (mapping more failed)
	recycled  bool    // buffers were given back this pass: publish them
	draining  bool
	drained   bool      // nothing in flight: the memory may be unmapped
	spare     uring.SQE // stands in when the ring cannot take a submission

	// Counters the tests read after Shutdown.
	starvations, shortSends, slotWaits, lost, heldMax, mapFailures int
}

// ringConn is a connection's io_uring state.
type ringConn struct {
	id         int32
	slot       int32 // the send slot in use, while sending
	slotOff    int   // bytes of the slot already sent
	slotLen    int   // bytes copied into the slot
	recvArmed  bool  // a multishot receive is armed
	recvCancel bool  // and its cancellation was submitted
	sending    bool  // a send is in flight
	slotWait   bool  // in slotWait
	starved    bool  // in starved
	eof        bool  // the receive ended for good: no re-arm
	ended      bool  // the end of input is still to be handled, after held
	released   bool  // the id is free
	endErr     error // the reason input ended (nil: the peer's FIN)
	// held keeps bytes that arrived while reading was paused; they are
	// passed to Data, in order, before any newer bytes when it resumes.
	held []byte
}

// newRingLoop makes a loop driven by a fresh io_uring instance. The ring
// starts disabled: the loop's own thread enables it, and becomes its only
// submitter.
func newRingLoop(s *Server) (*loop, error) {
	ro := s.ring
	r, err := uring.NewSized(ringEntries, ringCQEntries,
		uring.SetupSingleIssuer|uring.SetupDeferTaskrun|uring.SetupRDisabled|uring.SetupSubmitAll)
	if err != nil {
		return nil, err
	}
	rg := &ringIO{r: r, drained: true}
	fail := func(err error) (*loop, error) {
		rg.close(s.cfg.Logger)
		return nil, err
	}
	if rg.bufs, err = r.RegisterBufRing(ro.Buffers, ro.BufferSize, bufGroup); err != nil {
		return fail(err)
	}
	if rg.arena, err = newSendArena(ro.SendSlots, ro.SendSlotSize); err != nil {
		return fail(err)
	}
	if rg.wake, err = unix.Mmap(-1, 0, 8, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE); err != nil {
		return fail(fmt.Errorf("mmap: %w", err))
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return fail(fmt.Errorf("eventfd: %w", err))
	}
	return &loop{s: s, poller: poller{epfd: -1, efd: efd}, epoch: time.Now(), ring: rg}, nil
}

// close releases the ring and, if nothing is in flight, its memory. With
// operations still in flight (a loop that could not drain), the mappings
// are left in place: the kernel may still write to them.
func (rg *ringIO) close(log *slog.Logger) {
	rg.r.Close()
	if !rg.drained {
		log.Warn("uring: operations still in flight when the ring closed; their memory stays mapped", "inflight", rg.inflight)
		return
	}
	if rg.bufs != nil {
		rg.bufs.Free()
	}
	if rg.arena != nil {
		rg.arena.free()
	}
	if rg.wake != nil {
		unix.Munmap(rg.wake)
		rg.wake = nil
	}
}

// runRing is run for an io_uring loop: one io_uring_enter per pass.
func (l *loop) runRing() {
	rg := l.ring
	if err := rg.r.Enable(); err != nil {
		l.s.fail(err)
	}
	rg.drained = false
	l.ringArmWake()
	for _, lfd := range l.listeners {
		l.ringAccept(lfd)
	}
	for !l.stopping || l.n > 0 {
		l.maybeYield(rg.now)
		l.ringEnter(l.sleepTimeout(len(l.ready) > 0))
		l.sleeping.Store(false)
		rg.now = l.now()
		l.ringComplete()
		l.ringCheckSends()
		l.endPass()
	}
	l.ringDrain()
	l.publish()
}

// ringEnter submits what is queued and waits up to timeout ms (-1: until
// a completion; 0: not at all).
func (l *loop) ringEnter(timeout int) {
	wait, d := uint32(1), time.Duration(-1)
	switch {
	case timeout == 0:
		wait = 0
	case timeout > 0:
		d = time.Duration(timeout) * time.Millisecond
	}
	rg := l.ring
	rg.checking, rg.sends = rg.sends, rg.checking
	if _, err := rg.r.Enter(wait, d); err != nil {
		l.s.fail(err)
		time.Sleep(10 * time.Millisecond)
	}
}

// ringComplete handles every completion available, gives the receive
// buffers they used back to the kernel, and re-arms receives that ran out
// of buffers.
func (l *loop) ringComplete() {
	rg := l.ring
	rg.cqes = rg.r.Reap(rg.cqes[:0])
	for i := range rg.cqes {
		l.ringDispatch(&rg.cqes[i])
	}
	if rg.recycled {
		rg.bufs.Publish()
		rg.recycled = false
	}
	if len(rg.starved) > 0 {
		starved := rg.starved
		rg.starved = nil
		for _, c := range starved {
			c.rc.starved = false
			if !c.removed {
				l.ringResume(c)
			}
		}
	}
}

func (l *loop) ringDispatch(cqe *uring.CQE) {
	rg := l.ring
	id := int(uint32(cqe.UserData))
	switch cqe.UserData >> 56 {
	case opWake:
		rg.inflight--
		rg.wakeArmed = false
		if !rg.draining {
			l.ringArmWake()
		}
	case opAccept:
		l.ringAccepted(id, cqe)
	case opRecv:
		l.ringReceived(rg.conns[id], cqe)
	case opSend:
		l.ringSent(rg.conns[id], cqe.Res)
	case opCancel, opClose:
		// Submitted with SQECQESkipSuccess: this is a failure. A cancel
		// finds nothing when its target has just completed; the
		// completion on its way does the rest.
		if cqe.Res < 0 && cqe.UserData>>56 == opClose {
			l.s.cfg.Logger.Debug("uring: close failed", "err", unix.Errno(-cqe.Res))
		}
	}
}

// sqe returns a free submission entry, submitting what is queued first if
// the queue is full.
func (l *loop) sqe() *uring.SQE {
	rg := l.ring
	if e := rg.r.GetSQE(); e != nil {
		return e
	}
	if _, err := rg.r.Enter(0, 0); err != nil {
		l.s.fail(err)
	}
	if e := rg.r.GetSQE(); e != nil {
		return e
	}
	// The kernel took nothing: a broken ring. The operation is lost, and
	// the error has gone to Serve.
	if rg.lost++; rg.lost == 1 {
		l.s.cfg.Logger.Error("uring: the submission queue is stuck; operations are being dropped")
	}
	rg.spare = uring.SQE{}
	return &rg.spare
}

// cancel submits the cancellation of the operation with user data target.
// Success is silent.
func (l *loop) cancel(target uint64, id int) {
	e := l.sqe()
	e.PrepCancel(target, userData(opCancel, id))
	e.Flags |= uring.SQECQESkipSuccess
}

func (l *loop) ringArmWake() {
	rg := l.ring
	if rg.wakeArmed {
		return
	}
	l.sqe().PrepRead(l.efd, unsafe.Pointer(&rg.wake[0]), 8, userData(opWake, 0))
	rg.wakeArmed = true
	rg.inflight++
}

// ringAccept arms a multishot accept on listener lfd, unless one is armed.
func (l *loop) ringAccept(lfd int) {
	rg := l.ring
	if l.quiet || slices.Contains(rg.accepting, lfd) {
		return
	}
	l.sqe().PrepAccept(lfd, true, userData(opAccept, lfd))
	rg.accepting = append(rg.accepting, lfd)
	rg.inflight++
}

// ringStopAccepting cancels lfd's accept before quiesce closes it. A
// connection accepted meanwhile is closed on arrival.
func (l *loop) ringStopAccepting(lfd int) {
	if slices.Contains(l.ring.accepting, lfd) {
		l.cancel(userData(opAccept, lfd), lfd)
	}
}

func (l *loop) ringAccepted(lfd int, cqe *uring.CQE) {
	rg := l.ring
	more := cqe.More()
	if !more {
		rg.inflight--
		if i := slices.Index(rg.accepting, lfd); i >= 0 {
			rg.accepting = slices.Delete(rg.accepting, i, i+1)
		}
	}
	listening := !l.quiet && slices.Contains(l.listeners, lfd)
	fd := int(cqe.Res)
	if !listening {
		if fd >= 0 {
			unix.Close(fd) // accepted while shutting down
		}
		return
	}
	if cqe.Res == -int32(unix.ECANCELED) {
		if !more {
			l.ringAccept(lfd) // cancelled by ringRearmAccepts
		}
		return
	}
	var again bool
	if fd >= 0 {
		again = l.accepted(lfd, fd, peerAddr(fd, &l.sa), 0)
	} else {
		again = l.accepted(lfd, -1, netip.AddrPort{}, unix.Errno(-cqe.Res))
	}
	if !more && again {
		l.ringAccept(lfd)
	}
}

// ringRearmAccepts cancels and re-arms the loop's accepts. The kernel reads
// RLIMIT_NOFILE when an accept is submitted, so this makes a lowered
// limit apply to a multishot accept armed before.
func (l *loop) ringRearmAccepts() {
	for _, lfd := range l.ring.accepting {
		l.cancel(userData(opAccept, lfd), lfd)
	}
	if _, err := l.ring.r.Enter(0, 0); err != nil {
		l.s.fail(err)
	}
	l.ringComplete()
}

// ringAttach gives a new connection an id and arms its receive.
func (l *loop) ringAttach(c *conn) {
	rg := l.ring
	c.rc = ringConn{slot: -1}
	if n := len(rg.freeIDs); n > 0 {
		c.rc.id = rg.freeIDs[n-1]
		rg.freeIDs = rg.freeIDs[:n-1]
		rg.conns[c.rc.id] = c
	} else {
		c.rc.id = int32(len(rg.conns))
		rg.conns = append(rg.conns, c)
	}
	c.rdReady = true // readLater resumes a ring connection through readable
	l.ringRecv(c)
}

func (l *loop) ringRecv(c *conn) {
	l.sqe().PrepRecvSelect(c.fd, bufGroup, true, userData(opRecv, int(c.rc.id)))
	c.rc.recvArmed = true
	l.ring.inflight++
}

// ringRelease frees c's id once c is closed and no operation of its is in
// flight.
func (l *loop) ringRelease(c *conn) {
	rc := &c.rc
	if !c.removed || rc.released || rc.recvArmed || rc.sending {
		return
	}
	rc.released = true
	l.ring.conns[rc.id] = nil
	l.ring.freeIDs = append(l.ring.freeIDs, rc.id)
}

// ringReceived handles a receive completion: bytes (in a provided buffer),
// the end of input, an error, or the end of the multishot receive.
func (l *loop) ringReceived(c *conn, cqe *uring.CQE) {
	rg, rc := l.ring, &c.rc
	if !cqe.More() {
		rc.recvArmed, rc.recvCancel = false, false
		rg.inflight--
	}
	res := int(cqe.Res)
	bid, hasBuf := cqe.BufferID()
	switch {
	case c.removed:
	case res > 0:
		l.in += uint64(res)
		data := rg.bufs.Bytes(bid, res)
		switch {
		case c.closer.Sealed() && !c.finishing:
			l.finish(c) // a close was posted but not handled yet: read no more
		case l.canRead(c) && len(rc.held) == 0:
			l.deliver(c, data)
		case !c.finishing && !l.quiet:
			// Paused: keep the bytes for later. The cancellation of the
			// receive is submitted with the next io_uring_enter, before
			// the kernel runs any more of this loop's receive work, so
			// what arrives here is at most what one pass read from the
			// socket: bounded by its receive buffer.
			rc.held = append(rc.held, data...)
			rg.heldMax = max(rg.heldMax, len(rc.held))
		}
	case res == 0:
		l.ringInputEnded(c, nil)
	case res == -int(unix.ENOBUFS):
		rg.starvations++
		if !rc.starved {
			rc.starved = true
			rg.starved = append(rg.starved, c)
		}
	case res == -int(unix.ECANCELED):
	default:
		l.ringInputEnded(c, fmt.Errorf("read: %w", unix.Errno(-res)))
	}
	if hasBuf {
		rg.bufs.RecycleLater(bid)
		rg.recycled = true
	}
	switch {
	case c.removed:
		l.ringRelease(c)
	case rc.recvArmed && !rc.recvCancel && !l.canRead(c):
		// Reading paused, or stopped: take the receive back.
		l.cancel(userData(opRecv, int(rc.id)), int(rc.id))
		rc.recvCancel = true
	case !rc.recvArmed && !rc.starved && l.canRead(c):
		l.ringResume(c)
	}
}

// ringInputEnded handles the end of c's input after any bytes held back.
func (l *loop) ringInputEnded(c *conn, reason error) {
	rc := &c.rc
	rc.eof = true
	switch {
	case c.finishing:
	case l.canRead(c) && len(rc.held) == 0:
		l.inputEnded(c, reason)
	default:
		rc.ended, rc.endErr = true, reason
	}
}

// ringResume continues reading c: the bytes held while it was paused go
// to Data first, a chunk at a time, then the end of input if it came, and
// otherwise the receive is re-armed.
func (l *loop) ringResume(c *conn) {
	rc := &c.rc
	for len(rc.held) > 0 && l.canRead(c) && !c.removed {
		n := min(len(rc.held), l.s.chunk)
		part := rc.held[:n]
		rc.held = rc.held[n:]
		l.deliver(c, part)
	}
	if len(rc.held) == 0 {
		rc.held = nil
	}
	if c.removed || !l.canRead(c) {
		return
	}
	if rc.ended {
		rc.ended = false
		l.inputEnded(c, rc.endErr)
		return
	}
	if !rc.recvArmed && !rc.eof && !rc.starved {
		l.ringRecv(c)
	}
}

// ringFlush sends c's outbound data: the batch being written, or the next
// one. One send is in flight per connection at a time, from a send slot.
func (l *loop) ringFlush(c *conn) {
	rg, rc := l.ring, &c.rc
	if rc.sending || rc.slotWait || c.removed {
		return // the send's completion, or a free slot, continues
	}
	if c.batch == nil {
		c.batch, c.off = c.out.Take(), 0
		l.observe(c.batch)
	}
	if c.batch == nil {
		l.ringSentAll(c)
		return
	}
	slot, err := rg.arena.get()
	if err != nil {
		// Out of address space or memory: wait for a slot to be freed,
		// with the write timeout running.
		if rg.mapFailures++; rg.mapFailures == 1 {
			l.s.cfg.Logger.Warn("uring: cannot map more send slots; connections wait for a free one", "err", err)
		}
		rg.slotWaits++
		rc.slotWait = true
		rg.slotWait = append(rg.slotWait, c)
		l.ringStalled(c)
		return
	}
	rc.slot, rc.slotOff = int32(slot), 0
	rc.slotLen = copy(rg.arena.slot(slot), c.batch[c.off:])
	l.ringSend(c)
}

// ringSend submits the unsent part of c's slot.
func (l *loop) ringSend(c *conn) {
	rc := &c.rc
	p := l.ring.arena.slot(int(rc.slot))[rc.slotOff:rc.slotLen]
	l.sqe().PrepSend(c.fd, unsafe.Pointer(&p[0]), len(p), userData(opSend, int(rc.id)))
	rc.sending = true
	l.ring.inflight++
	l.ring.sends = append(l.ring.sends, c)
}

// ringCheckSends runs after each io_uring_enter: a send submitted by it
// that has not completed found the socket full.
func (l *loop) ringCheckSends() {
	rg := l.ring
	for i, c := range rg.checking {
		rg.checking[i] = nil
		if c.rc.sending && !c.removed {
			l.ringStalled(c)
		}
	}
	rg.checking = rg.checking[:0]
}

// ringStalled marks c as waiting for the socket (or for a send slot), as
// an epoll loop does when a write finds the socket full: the write
// timeout runs from now, and from each send that makes progress, and
// backpressure may pause reading.
func (l *loop) ringStalled(c *conn) {
	if !c.wantOut {
		c.wantOut = true
		c.stallSince = l.ring.now
		l.addTimer(c, c.stallSince+l.s.cfg.WriteTimeout)
	}
}

// ringSent handles a send completion: res bytes went out, or it failed.
func (l *loop) ringSent(c *conn, res int32) {
	rg, rc := l.ring, &c.rc
	rc.sending = false
	rg.inflight--
	if c.removed || res < 0 {
		l.ringPutSlot(c)
		if c.removed {
			l.ringRelease(c)
			return
		}
		c.out.Abort()
		c.batch = nil
		c.startClosing(fmt.Errorf("write: %w", unix.Errno(-res)), true, time.Now())
		l.remove(c)
		return
	}
	n := int(res)
	l.out += uint64(n)
	if c.wantOut {
		c.stallSince = rg.now
	}
	rc.slotOff += n
	c.off += n
	if rc.slotOff < rc.slotLen {
		// A short send: the socket took part of it. Send the rest.
		rg.shortSends++
		l.ringStalled(c)
		c.out.Sent(n)
		l.drained(c)
		l.ringSend(c)
		return
	}
	l.ringPutSlot(c)
	if c.off < len(c.batch) {
		c.out.Sent(n) // the rest of a batch larger than a slot
	} else if c.batch, c.off = c.out.Next(c.batch), 0; c.batch == nil {
		l.ringSentAll(c) // Next gave the flush token back: nothing to Take
		return
	} else {
		l.observe(c.batch)
	}
	// Every send that makes progress may have taken the buffer under the
	// low-water mark, even when more is queued behind it (a fan-out writer
	// that always has something pending): resume reading then, as the
	// epoll loop's flush does.
	l.drained(c)
	l.ringFlush(c)
}

// ringSentAll is reached when c has nothing left to send: reading may
// resume, and a closing connection is done.
func (l *loop) ringSentAll(c *conn) {
	c.wantOut = false
	l.drained(c)
	if c.finishing && c.out.Idle() {
		l.remove(c)
	}
}

// ringPutSlot frees c's send slot and hands free slots to connections
// waiting for one (there are some only if mapping more slots failed).
func (l *loop) ringPutSlot(c *conn) {
	rg := l.ring
	rg.arena.put(int(c.rc.slot))
	c.rc.slot = -1
	for len(rg.slotWait) > 0 && rg.arena.available() > 0 {
		w := rg.slotWait[0]
		rg.slotWait = rg.slotWait[1:]
		w.rc.slotWait = false
		l.ringFlush(w)
	}
	if len(rg.slotWait) == 0 {
		rg.slotWait = nil
	}
}

// ringClose cancels c's outstanding operations and closes its socket. The
// id stays taken until the cancelled operations have completed.
func (l *loop) ringClose(c *conn) {
	rc := &c.rc
	id := int(rc.id)
	if rc.recvArmed && !rc.recvCancel {
		l.cancel(userData(opRecv, id), id)
		rc.recvCancel = true
	}
	if rc.sending {
		l.cancel(userData(opSend, id), id)
	}
	rc.held = nil
	e := l.sqe()
	e.PrepClose(c.fd, userData(opClose, id))
	e.Flags |= uring.SQECQESkipSuccess
	l.ringRelease(c)
}

// ringDrain runs when the loop stops: it cancels the wake-up read and
// waits (boundedly) until every operation in flight has completed, so the
// memory they use can be unmapped.
func (l *loop) ringDrain() {
	rg := l.ring
	rg.draining = true
	if rg.wakeArmed {
		l.cancel(userData(opWake, 0), 0)
	}
	deadline := time.Now().Add(ringDrainLimit)
	for rg.inflight > 0 && time.Now().Before(deadline) {
		l.ringEnter(10)
		l.ringComplete()
	}
	rg.drained = rg.inflight == 0
}

// sendArena is a loop's send slots: chunks of per slots of size bytes,
// each its own anonymous mapping (a uring.Arena), outside the Go heap. A
// connection holds a slot from the copy of its bytes until the kernel has
// completed the send, and has at most one send in flight, so the slots a
// loop needs are at most its connections with a send in flight. A peer
// that does not read holds its slot until the write timeout; so that it
// cannot hold up anyone else, get maps another chunk when every slot is
// taken, rather than make the connection wait.
//
// Slots come from the lowest chunk with one free, last freed first, and a
// mapping's pages are touched only as slots are used, so a lightly loaded
// loop reuses the same few pages of the first chunk and RSS follows the
// slots actually in use. The highest chunk is unmapped as soon as it is
// empty, while the others keep half a chunk free (so a load that hovers
// at a chunk's edge does not map and unmap on every send); a chunk with a
// send in flight is never unmapped. The first chunk stays.
//
// Only the loop's goroutine touches it.
type sendArena struct {
	per, size int
	chunks    []*uring.Arena
	used      int // slots taken
	// mapChunk maps a chunk: uring.NewArena (tests make it fail).
	mapChunk func(slots, size int) (*uring.Arena, error)
	// Counters the tests read: chunks mapped and unmapped after the first.
	grown, shrunk int
}

// newSendArena maps the first chunk of per slots of size bytes.
func newSendArena(per, size int) (*sendArena, error) {
	a := &sendArena{per: per, size: size, mapChunk: uring.NewArena}
	ch, err := a.mapChunk(per, size)
	if err != nil {
		return nil, err
	}
	a.chunks = append(a.chunks, ch)
	return a, nil
}

// get takes a free slot, mapping another chunk if every slot is taken. It
// fails only if that mapping fails.
func (a *sendArena) get() (int, error) {
	if a.used < len(a.chunks)*a.per {
		for ci, ch := range a.chunks {
			if i, ok := ch.Get(); ok {
				a.used++
				return ci*a.per + i, nil
			}
		}
	}
	ch, err := a.mapChunk(a.per, a.size)
	if err != nil {
		return -1, err
	}
	a.chunks = append(a.chunks, ch)
	a.grown++
	i, _ := ch.Get()
	a.used++
	return (len(a.chunks)-1)*a.per + i, nil
}

// put gives slot i back, and unmaps empty chunks at the top while the
// rest keep half a chunk free.
func (a *sendArena) put(i int) {
	a.chunks[i/a.per].Put(i % a.per)
	a.used--
	for n := len(a.chunks); n > 1 && a.chunks[n-1].Available() == a.per &&
		(n-1)*a.per-a.used >= max(1, a.per/2); n-- {
		a.chunks[n-1].Free()
		a.chunks[n-1] = nil
		a.chunks = a.chunks[:n-1]
		a.shrunk++
	}
}

// slot returns slot i's memory.
func (a *sendArena) slot(i int) []byte { return a.chunks[i/a.per].Slot(i % a.per) }

// available returns the number of free slots in the chunks mapped.
func (a *sendArena) available() int { return len(a.chunks)*a.per - a.used }

// free unmaps every chunk. Call it only when no send is in flight.
func (a *sendArena) free() {
	for _, ch := range a.chunks {
		ch.Free()
	}
	a.chunks = nil
}
