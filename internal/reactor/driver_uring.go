package reactor

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tcplab/tcplab/internal/outbuf"
	"github.com/tcplab/tcplab/internal/uring"
)

// uringDriver is the driver of the uring model's loops: the kernel
// accepts, receives, sends and closes through submissions to an io_uring
// instance (internal/uring), and the loop learns of their completions.
//
//   - One io_uring instance per loop, created disabled (so an unavailable
//     io_uring is an error in New) and enabled by the loop's locked
//     thread in start, which is then its only submitter (SINGLE_ISSUER,
//     DEFER_TASKRUN: completion work runs only inside the loop's own
//     io_uring_enter, batched).
//   - Each pass is one io_uring_enter (wait): it submits everything queued
//     since the last pass and waits for completions (or the next timer).
//   - Accept is multishot, re-armed when a completion says it ended.
//   - Receive is a multishot recv with buffer select: the kernel picks a
//     buffer from the loop's registered buffer ring; the loop hands the
//     bytes on and gives the buffer back at once. Pausing reading cancels
//     the receive; bytes that arrive meanwhile are held and handed over,
//     in order, when reading resumes.
//   - Send copies the outbound batch into a slot of an mmap'd arena
//     (sendarena.go) and sends from there: the kernel never reads Go
//     memory after the call that submitted it. A short send is
//     resubmitted from where it stopped. The arena grows by another
//     mapping when every slot is taken, so a send that stalls (a peer
//     that does not read) never holds up another connection's.
//   - Close is a submission too, after cancelling the connection's
//     outstanding operations.
//   - Wake-ups: an eventfd read kept armed in the ring; posters write the
//     eventfd only when the loop sleeps, as with epoll.
//
// Operations are identified by user data holding an opcode and a
// loop-local connection id (never a Go pointer). An id is reused only
// after every operation that carried it has completed.
type uringDriver struct {
	l     *loop
	r     *uring.Ring
	bufs  *uring.BufRing // receive buffers
	arena *sendArena     // send slots
	efd   int            // the eventfd posters write
	wakeb []byte         // 8 mmap'd bytes the eventfd read fills

	cqes     []uring.CQE
	conns    []*ringConn // by id
	freeIDs  []int32
	inflight int // operations whose last completion is still to come

	// sends holds connections whose send was queued since the last
	// io_uring_enter; checking, those whose send that enter submitted. A
	// send still in flight after the enter that submitted it did not
	// complete at once: the socket is full.
	sends, checking []*conn

	started   bool
	wakeArmed bool
	armed     []int   // listeners with an accept armed
	starved   []*conn // receives that ended for want of a buffer
	slotWait  []*conn // connections waiting for a send slot (mapping more failed)
	recycled  bool    // buffers were given back this pass: publish them
	draining  bool
	drained   bool      // nothing in flight: the memory may be unmapped
	spare     uring.SQE // stands in when the ring cannot take a submission

	// lost counts operations dropped for a stuck submission queue, and
	// mapFailures send arena mappings that failed: each is logged once.
	lost, mapFailures int

	// lingerers are the goroutines of lingering closes (lingerAside):
	// stop waits for them, CloseLinger at most.
	lingerers sync.WaitGroup
}

// ringConn is a connection's io_uring state. It stays with its id when the
// connection goes, for the next connection to take that id.
type ringConn struct {
	c          *conn
	slot       int32 // the send slot in use, while sending
	slotOff    int   // bytes of the slot already sent
	slotLen    int   // bytes copied into the slot
	recvArmed  bool  // a multishot receive is armed
	recvCancel bool  // and its cancellation was submitted
	sending    bool  // a send is in flight
	starved    bool  // in starved
	recvEnded  bool  // the receive ended for good: no re-arm
	ended      bool  // the end of input is still to be handed over, after held
	released   bool  // the id is free
	endErr     error // the reason input ended (nil: the peer's FIN)
	// held keeps bytes that arrived while reading was paused; they are
	// handed over, in order, before any newer bytes when it resumes.
	held []byte
}

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

// Debug messages of a loop running short of a ring resource. Each says
// what the loop does about it; the tests count them to see the path taken.
const (
	msgStarved   = "uring: receive buffers ran out; the receive is re-armed once the pass has given some back"
	msgShortSend = "uring: a send completed short; the rest is sent next"
	msgSlotWait  = "uring: no send slot and none can be mapped; the connection waits for one"
	msgGrew      = "uring: every send slot taken; mapped more"
	msgShrank    = "uring: send slots unused; unmapped a mapping"
)

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

// newUringDriver makes a loop's driver on a fresh io_uring instance. The
// ring starts disabled: the loop's own thread enables it in start, and
// becomes its only submitter.
func newUringDriver(l *loop) (*uringDriver, error) {
	ro := l.s.ring
	r, err := uring.New(ringEntries, ringCQEntries,
		uring.SetupSingleIssuer|uring.SetupDeferTaskrun|uring.SetupRDisabled|uring.SetupSubmitAll)
	if err != nil {
		return nil, err
	}
	d := &uringDriver{l: l, r: r, efd: -1, drained: true}
	fail := func(err error) (*uringDriver, error) {
		d.release()
		return nil, err
	}
	if d.bufs, err = r.RegisterBufRing(ro.Buffers, ro.BufferSize, bufGroup); err != nil {
		return fail(err)
	}
	if d.arena, err = newSendArena(ro.SendSlots, ro.SendSlotSize); err != nil {
		return fail(err)
	}
	if d.wakeb, err = unix.Mmap(-1, 0, 8, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE); err != nil {
		return fail(fmt.Errorf("mmap: %w", err))
	}
	if d.efd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		return fail(fmt.Errorf("eventfd: %w", err))
	}
	return d, nil
}

// release closes the ring and, if nothing is in flight, frees its memory.
// With operations still in flight (a loop that could not drain), the
// mappings are left in place: the kernel may still write to them.
func (d *uringDriver) release() {
	d.r.Close()
	if d.efd >= 0 {
		unix.Close(d.efd)
		d.efd = -1
	}
	if !d.drained {
		d.l.s.cfg.Logger.Warn("uring: operations still in flight when the ring closed; their memory stays mapped", "inflight", d.inflight)
		return
	}
	if d.bufs != nil {
		d.bufs.Free()
	}
	if d.arena != nil {
		d.arena.free()
	}
	if d.wakeb != nil {
		unix.Munmap(d.wakeb)
		d.wakeb = nil
	}
}

// debug logs a resource running short, if the logger wants debug records.
func (d *uringDriver) debug(msg string) {
	if log := d.l.s.cfg.Logger; log.Enabled(context.Background(), slog.LevelDebug) {
		log.Debug(msg)
	}
}

func (d *uringDriver) start() error {
	d.started = true
	err := d.r.Enable()
	d.drained = false
	d.armWake()
	for _, lfd := range d.l.listeners {
		d.accept(lfd)
	}
	return err
}

// wait submits what is queued and waits up to timeout ms (-1: until a
// completion; 0: not at all).
func (d *uringDriver) wait(timeout int) {
	wait, dur := uint32(1), time.Duration(-1)
	switch {
	case timeout == 0:
		wait = 0
	case timeout > 0:
		dur = time.Duration(timeout) * time.Millisecond
	}
	d.checking, d.sends = d.sends, d.checking
	if _, err := d.r.Enter(wait, dur); err != nil {
		d.l.s.fail(err)
		time.Sleep(10 * time.Millisecond)
	}
}

func (d *uringDriver) handle() {
	d.complete()
	d.checkSends()
}

// wake makes the eventfd readable, completing its armed read.
func (d *uringDriver) wake() {
	unix.RawSyscall(unix.SYS_WRITE, uintptr(d.efd), uintptr(unsafe.Pointer(&one[0])), 8)
}

// complete handles every completion available, gives the receive buffers
// they used back to the kernel, and re-arms receives that ran out of
// buffers.
func (d *uringDriver) complete() {
	d.cqes = d.r.Reap(d.cqes[:0])
	for i := range d.cqes {
		d.dispatch(&d.cqes[i])
	}
	if d.recycled {
		d.bufs.Publish()
		d.recycled = false
	}
	if len(d.starved) > 0 {
		starved := d.starved
		d.starved = nil
		for _, c := range starved {
			if rc := d.conns[c.id]; rc.c == c { // not released, its id taken again, meanwhile
				rc.starved = false
				if !c.removed {
					d.read(c)
				}
			}
		}
	}
}

func (d *uringDriver) dispatch(cqe *uring.CQE) {
	id := int(uint32(cqe.UserData))
	switch cqe.UserData >> 56 {
	case opWake:
		d.inflight--
		d.wakeArmed = false
		if !d.draining {
			d.armWake()
		}
	case opAccept:
		d.accepted(id, cqe)
	case opRecv:
		d.received(d.conns[id], cqe)
	case opSend:
		d.sent(d.conns[id], cqe.Res)
	case opCancel, opClose:
		// Submitted with SQECQESkipSuccess: this is a failure. A cancel
		// finds nothing when its target has just completed; the
		// completion on its way does the rest.
		if cqe.Res < 0 && cqe.UserData>>56 == opClose {
			d.l.s.cfg.Logger.Debug("uring: close failed", "err", unix.Errno(-cqe.Res))
		}
	}
}

// sqe returns a free submission entry, submitting what is queued first if
// the queue is full.
func (d *uringDriver) sqe() *uring.SQE {
	if e := d.r.GetSQE(); e != nil {
		return e
	}
	if _, err := d.r.Enter(0, 0); err != nil {
		d.l.s.fail(err)
	}
	if e := d.r.GetSQE(); e != nil {
		return e
	}
	// The kernel took nothing: a broken ring. The operation is lost, and
	// the error has gone to Serve.
	if d.lost++; d.lost == 1 {
		d.l.s.cfg.Logger.Error("uring: the submission queue is stuck; operations are being dropped")
	}
	d.spare = uring.SQE{}
	return &d.spare
}

// cancel submits the cancellation of the operation with user data target.
// Success is silent.
func (d *uringDriver) cancel(target uint64, id int) {
	e := d.sqe()
	e.PrepCancel(target, userData(opCancel, id))
	e.Flags |= uring.SQECQESkipSuccess
}

func (d *uringDriver) armWake() {
	if d.wakeArmed {
		return
	}
	d.sqe().PrepRead(d.efd, unsafe.Pointer(&d.wakeb[0]), 8, userData(opWake, 0))
	d.wakeArmed = true
	d.inflight++
}

// accepting arms a multishot accept on lfd (from start on: start arms the
// loop's listeners), or cancels the one armed: before quiesce closes the
// listener, a connection accepted meanwhile is closed on arrival.
func (d *uringDriver) accepting(lfd int, on bool) error {
	switch {
	case on && d.started:
		d.accept(lfd)
	case !on && slices.Contains(d.armed, lfd):
		d.cancel(userData(opAccept, lfd), lfd)
	}
	return nil
}

// accept arms a multishot accept on listener lfd, unless one is armed.
func (d *uringDriver) accept(lfd int) {
	if d.l.quiet || slices.Contains(d.armed, lfd) {
		return
	}
	d.sqe().PrepAccept(lfd, true, userData(opAccept, lfd))
	d.armed = append(d.armed, lfd)
	d.inflight++
}

func (d *uringDriver) accepted(lfd int, cqe *uring.CQE) {
	l := d.l
	more := cqe.More()
	if !more {
		d.inflight--
		if i := slices.Index(d.armed, lfd); i >= 0 {
			d.armed = slices.Delete(d.armed, i, i+1)
		}
	}
	fd := int(cqe.Res)
	if l.quiet || !l.listening(lfd) {
		if fd >= 0 {
			unix.Close(fd) // accepted while shutting down
		}
		return
	}
	if cqe.Res == -int32(unix.ECANCELED) {
		if !more {
			d.accept(lfd) // cancelled to be armed again (the tests' rearmAccepts)
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
		d.accept(lfd)
	}
}

// attach gives a new connection an id and arms its receive.
func (d *uringDriver) attach(c *conn) error {
	var rc *ringConn
	if n := len(d.freeIDs); n > 0 {
		c.id = d.freeIDs[n-1]
		d.freeIDs = d.freeIDs[:n-1]
		rc = d.conns[c.id]
		*rc = ringConn{}
	} else {
		c.id = int32(len(d.conns))
		rc = &ringConn{}
		d.conns = append(d.conns, rc)
	}
	rc.c, rc.slot = c, -1
	c.rdReady = true // readLater resumes a ring connection through read
	d.recv(c, rc)
	return nil
}

func (d *uringDriver) recv(c *conn, rc *ringConn) {
	d.sqe().PrepRecvSelect(c.fd, bufGroup, true, userData(opRecv, int(c.id)))
	rc.recvArmed = true
	d.inflight++
}

// releaseID frees c's id once c is closed and no operation of its is in
// flight.
func (d *uringDriver) releaseID(rc *ringConn) {
	if rc.released || !rc.c.removed || rc.recvArmed || rc.sending {
		return
	}
	rc.released = true
	d.freeIDs = append(d.freeIDs, rc.c.id)
	rc.c = nil // the connection is garbage now
}

// received handles a receive completion: bytes (in a provided buffer),
// the end of input, an error, or the end of the multishot receive.
func (d *uringDriver) received(rc *ringConn, cqe *uring.CQE) {
	l, c := d.l, rc.c
	if !cqe.More() {
		rc.recvArmed, rc.recvCancel = false, false
		d.inflight--
	}
	res := int(cqe.Res)
	bid, hasBuf := cqe.BufferID()
	switch {
	case c.removed:
	case res > 0:
		l.in += uint64(res)
		data := d.bufs.Bytes(bid, res)
		switch {
		case c.closer.Sealed() && !c.finishing:
			l.finish(c) // a close was posted but not handled yet: read no more
		case l.canRead(c) && len(rc.held) == 0:
			l.input(c, data)
		case !c.finishing && !l.quiet:
			// Paused: keep the bytes for later. The cancellation of the
			// receive is submitted with the next io_uring_enter, before
			// the kernel runs any more of this loop's receive work, so
			// what arrives here is at most what one pass read from the
			// socket: bounded by its receive buffer.
			rc.held = append(rc.held, data...)
		}
	case res == 0:
		d.inputEnded(c, rc, nil)
	case res == -int(unix.ENOBUFS):
		d.debug(msgStarved)
		if !rc.starved {
			rc.starved = true
			d.starved = append(d.starved, c)
		}
	case res == -int(unix.ECANCELED):
	default:
		d.inputEnded(c, rc, fmt.Errorf("read: %w", unix.Errno(-res)))
	}
	if hasBuf {
		d.bufs.RecycleLater(bid)
		d.recycled = true
	}
	switch {
	case c.removed:
		d.releaseID(rc)
	case rc.recvArmed && !rc.recvCancel && !l.canRead(c):
		// Reading paused, or stopped: take the receive back.
		d.cancel(userData(opRecv, int(c.id)), int(c.id))
		rc.recvCancel = true
	case !rc.recvArmed && !rc.starved && l.canRead(c):
		d.read(c)
	}
}

// inputEnded handles the end of c's input, after any bytes held back.
func (d *uringDriver) inputEnded(c *conn, rc *ringConn, reason error) {
	rc.recvEnded = true
	c.rdHup = true // the peer sends no more
	switch {
	case c.finishing:
	case d.l.canRead(c) && len(rc.held) == 0:
		d.l.inputEnded(c, reason)
	default:
		rc.ended, rc.endErr = true, reason
	}
}

// read continues reading c: the bytes held while it was paused are handed
// over first, a chunk at a time, then the end of input if it came, and
// otherwise the receive is re-armed.
func (d *uringDriver) read(c *conn) {
	l, rc := d.l, d.conns[c.id]
	for len(rc.held) > 0 && l.canRead(c) && !c.removed {
		n := min(len(rc.held), l.s.chunk)
		part := rc.held[:n]
		rc.held = rc.held[n:]
		l.input(c, part)
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
	if !rc.recvArmed && !rc.recvEnded && !rc.starved {
		d.recv(c, rc)
	}
}

// send copies p, up to a slot's worth, into a send slot and submits it;
// or, after a short send, submits the rest of the slot (the same bytes p
// begins with). One send is in flight per connection at a time. The loop
// hears of it in sendDone.
func (d *uringDriver) send(c *conn, p []byte) (int, error) {
	rc := d.conns[c.id]
	if rc.slot < 0 {
		chunks := len(d.arena.chunks)
		slot, err := d.arena.get()
		if err != nil {
			// Out of address space or memory: wait for a slot to be
			// freed, with the write timeout running.
			if d.mapFailures++; d.mapFailures == 1 {
				d.l.s.cfg.Logger.Warn("uring: cannot map more send slots; connections wait for a free one", "err", err)
			}
			d.debug(msgSlotWait)
			d.slotWait = append(d.slotWait, c)
			d.l.stalled(c, d.l.passNow)
			return sendPending, nil
		}
		if len(d.arena.chunks) > chunks {
			d.debug(msgGrew)
		}
		rc.slot, rc.slotOff = int32(slot), 0
		rc.slotLen = copy(d.arena.slot(slot), p)
	}
	b := d.arena.slot(int(rc.slot))[rc.slotOff:rc.slotLen]
	d.sqe().PrepSend(c.fd, unsafe.Pointer(&b[0]), len(b), userData(opSend, int(c.id)))
	rc.sending = true
	d.inflight++
	d.sends = append(d.sends, c)
	return sendPending, nil
}

// checkSends runs after each io_uring_enter: a send submitted by it that
// has not completed found the socket full.
func (d *uringDriver) checkSends() {
	for i, c := range d.checking {
		d.checking[i] = nil
		if !c.removed && d.conns[c.id].sending {
			d.l.stalled(c, d.l.passNow)
		}
	}
	d.checking = d.checking[:0]
}

// sent handles a send completion: res bytes went out, or it failed.
func (d *uringDriver) sent(rc *ringConn, res int32) {
	c := rc.c
	rc.sending = false
	d.inflight--
	if c.removed {
		d.putSlot(rc)
		d.releaseID(rc)
		return
	}
	if res < 0 {
		d.putSlot(rc)
		d.l.sendDone(c, 0, fmt.Errorf("write: %w", unix.Errno(-res)))
		return
	}
	n := int(res)
	if rc.slotOff += n; rc.slotOff < rc.slotLen {
		// A short send: the socket took part of it. The loop sends the
		// rest of the slot next.
		d.debug(msgShortSend)
		d.l.stalled(c, d.l.passNow)
	} else {
		d.putSlot(rc)
	}
	d.l.sendDone(c, n, nil)
}

// putSlot frees rc's send slot and hands free slots to connections
// waiting for one (there are some only if mapping more slots failed).
func (d *uringDriver) putSlot(rc *ringConn) {
	if rc.slot < 0 {
		return
	}
	chunks := len(d.arena.chunks)
	d.arena.put(int(rc.slot))
	for range chunks - len(d.arena.chunks) {
		d.debug(msgShrank)
	}
	rc.slot = -1
	for len(d.slotWait) > 0 && d.arena.available() > 0 {
		w := d.slotWait[0]
		d.slotWait = d.slotWait[1:]
		if !w.removed {
			d.l.sendDone(w, 0, nil) // the loop asks again
		}
	}
	if len(d.slotWait) == 0 {
		d.slotWait = nil
	}
}

// close closes c's socket with a FIN, not a reset: when the server closes
// on its own while the peer still sends, and the farewell is out of the
// ring, it lingers off the loop (lingerAside); otherwise it at least
// drops what has arrived. Then it cancels c's outstanding operations and
// submits the close; the id stays taken until the cancelled operations
// have completed.
func (d *uringDriver) close(c *conn, peerSending bool) {
	rc := d.conns[c.id]
	lingered := peerSending && c.closeReason() != nil && !rc.sending && d.lingerAside(c.fd)
	if peerSending && !lingered {
		discardInput(c.fd)
	}
	id := int(c.id)
	if rc.recvArmed && !rc.recvCancel {
		d.cancel(userData(opRecv, id), id)
		rc.recvCancel = true
	}
	if rc.sending {
		d.cancel(userData(opSend, id), id)
	}
	rc.held = nil
	e := d.sqe()
	e.PrepClose(c.fd, userData(opClose, id))
	e.Flags |= uring.SQECQESkipSuccess
	d.releaseID(rc)
}

// lingerAside is the io_uring loop's lingering close (see epollDriver's
// linger): a duplicate of fd, in Go's poller rather than on the ring,
// shuts the write side, so the farewell already in the socket ends with a
// FIN, and drops what the peer still sends until the peer closes or
// CloseLinger passes; then it closes, and the socket with it. The loop
// closes its own descriptor as usual. It costs a goroutine per lingering
// socket, for at most CloseLinger, only for connections the server
// closes on its own while the peer still sends. It reports false if fd
// could not be duplicated (out of descriptors): then nothing lingers.
func (d *uringDriver) lingerAside(fd int) bool {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return false
	}
	f := os.NewFile(uintptr(dup), "lingering socket")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return false
	}
	d.lingerers.Go(func() {
		outbuf.Linger(nc, time.Now().Add(outbuf.CloseLinger))
		nc.Close()
	})
	return true
}

// stop runs when the loop has no connection left: it cancels the wake-up
// read and waits (boundedly) until every operation in flight has
// completed, so the memory they use can be unmapped, and for the
// lingering closes.
func (d *uringDriver) stop() bool {
	d.draining = true
	if d.wakeArmed {
		d.cancel(userData(opWake, 0), 0)
	}
	deadline := time.Now().Add(ringDrainLimit)
	for d.inflight > 0 && time.Now().Before(deadline) {
		d.wait(10)
		d.complete()
	}
	d.drained = d.inflight == 0
	d.lingerers.Wait()
	return true
}
