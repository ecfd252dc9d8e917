package reactor

import (
	"fmt"
	"slices"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tcplab/tcplab/internal/outbuf"
)

// epollDriver is the driver of the reactor and reactor-pool loops: one
// epoll instance and an eventfd that wakes it.
//
//   - Edge-triggered: each connection is registered once, for input,
//     output and the peer's FIN, and never re-registered. A readable
//     connection gets one read per pass into the loop's 64 KiB buffer; a
//     read that may have left bytes behind (it filled the chunk, or came
//     after the FIN) puts the connection on the loop's ready list, so a
//     busy connection cannot starve the others and no read is spent to
//     see EAGAIN. Output edges come only after a write found the socket
//     full, so pausing a read or waiting for space costs no epoll_ctl.
//   - Writes are synchronous: send writes what the socket takes now.
//   - Listeners and the eventfd are level-triggered.
//   - A connection the server closes while the peer may still send
//     lingers on the loop (linger): its write side is shut, and what
//     arrives is dropped until the peer closes or outbuf.CloseLinger
//     passes, so the close is a FIN and not a reset that could cost the
//     peer its farewell.
//
// Calls that cannot block (read, write and accept4 on non-blocking
// sockets, epoll_ctl, the eventfd) go through unix.RawSyscall, which
// skips the Go scheduler's entersyscall/exitsyscall bookkeeping; only
// epoll_wait, which sleeps, takes the normal path so the runtime can run
// other goroutines meanwhile.
type epollDriver struct {
	l      *loop
	epfd   int
	efd    int
	events []unix.EpollEvent
	n      int    // events the last wait returned
	buf    []byte // the read buffer every connection of the loop shares
	// listeners are the listening sockets registered; paused, those of
	// them switched off (accepting false).
	listeners, paused []int
	// lingering holds the sockets lingering after their close, by fd.
	// The value is the linger's generation: the descriptor may be reused
	// and linger again before an earlier linger's deadline passes, and
	// that deadline must not end the new one.
	lingering map[int]int32
	lingerGen int32
	// lingers are the lingers' deadlines, in order: all are CloseLinger
	// long.
	lingers []lingerEnd
	scratch [8]byte
}

// lingerEnd is when the linger of fd, of generation gen, ends.
type lingerEnd struct {
	at  time.Duration
	fd  int
	gen int32
}

// Tags in the 32-bit Pad word of an epoll event say what the fd is. A
// connection's tag is its positive generation, so an event for a closed fd
// whose number was reused is recognised as stale and ignored.
const (
	tagWake     int32 = 0
	tagListener int32 = -1
)

const maxEvents = 256 // events taken per epoll_wait

// connEvents is every connection's registration, made once: edge-
// triggered input and output, and the peer's FIN. Output edges come only
// after a write found the socket full, so nothing is re-registered to
// pause reading or to wait for space.
const connEvents = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET

func newEpollDriver(l *loop) (*epollDriver, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	d := &epollDriver{l: l, epfd: epfd, efd: efd, events: make([]unix.EpollEvent, maxEvents), buf: make([]byte, readBufSize)}
	if err := d.ctl(unix.EPOLL_CTL_ADD, efd, unix.EPOLLIN, tagWake); err != nil {
		d.release()
		return nil, err
	}
	return d, nil
}

func (d *epollDriver) release() {
	unix.Close(d.efd)
	unix.Close(d.epfd)
}

// ctl adds, modifies or deletes fd's registration; events says the
// trigger mode (connections are edge-triggered, see connEvents).
func (d *epollDriver) ctl(op, fd int, events uint32, tag int32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd), Pad: tag}
	if err := unix.EpollCtl(d.epfd, op, fd, &ev); err != nil { // a raw syscall in x/sys/unix
		return fmt.Errorf("epoll_ctl fd %d: %w", fd, err)
	}
	return nil
}

func (d *epollDriver) start() error { return nil }

func (d *epollDriver) wait(timeout int) {
	if len(d.lingers) > 0 {
		// The loop's timers do not know when lingers end.
		next := d.lingers[0].at - d.l.now()
		ms := max(0, int((next+time.Millisecond-1)/time.Millisecond))
		if timeout < 0 || ms < timeout {
			timeout = ms
		}
	}
	n, err := unix.EpollWait(d.epfd, d.events, timeout)
	switch {
	case err == unix.EINTR:
		n = 0
	case err != nil:
		d.l.s.fail(fmt.Errorf("epoll_wait: %w", err))
		time.Sleep(10 * time.Millisecond)
		n = 0
	}
	d.n = n
}

// wake makes the eventfd readable, waking a wait in progress.
func (d *epollDriver) wake() {
	unix.RawSyscall(unix.SYS_WRITE, uintptr(d.efd), uintptr(unsafe.Pointer(&one[0])), 8)
}

func (d *epollDriver) handle() {
	for i := range d.n {
		d.event(d.events[i])
	}
	if len(d.lingers) > 0 {
		d.expireLingers(d.l.passNow)
	}
}

func (d *epollDriver) event(ev unix.EpollEvent) {
	l := d.l
	switch ev.Pad {
	case tagWake:
		// Reset the eventfd after a wake-up.
		unix.RawSyscall(unix.SYS_READ, uintptr(d.efd), uintptr(unsafe.Pointer(&d.scratch[0])), 8)
		return
	case tagListener:
		d.acceptAll(int(ev.Fd))
		return
	}
	fd := int(ev.Fd)
	if fd >= len(l.conns) {
		return
	}
	c := l.conns[fd]
	if c == nil {
		if _, ok := d.lingering[fd]; ok {
			d.dropInput(fd)
		}
		return
	}
	if c.gen != ev.Pad {
		return // the fd was closed earlier in this batch
	}
	bad := ev.Events&(unix.EPOLLERR|unix.EPOLLHUP) != 0
	if ev.Events&unix.EPOLLRDHUP != 0 {
		c.rdHup = true
	}
	if ev.Events&unix.EPOLLIN != 0 || bad {
		c.rdReady = true
		if l.canRead(c) {
			l.read(c)
		}
	}
	if !c.removed && c.wantOut && (ev.Events&unix.EPOLLOUT != 0 || bad) {
		l.flush(c)
	}
	if !c.removed && bad && !c.wantOut && !l.canRead(c) {
		// No read or write is due to report it, and edge-triggered epoll
		// will not say it again: the connection is dead.
		l.hungUp(c, sockError(c.fd, errHangUp))
	}
}

// acceptAll takes the pending connections of listener lfd, up to
// acceptBatch.
func (d *epollDriver) acceptAll(lfd int) {
	l := d.l
	if !l.listening(lfd) {
		return // closed by quiesce earlier in this batch
	}
	for range acceptBatch {
		fd, remote, errno := rawAccept(lfd, &l.sa)
		if !l.accepted(lfd, fd, remote, errno) {
			return
		}
	}
}

func (d *epollDriver) accepting(lfd int, on bool) error {
	if !slices.Contains(d.listeners, lfd) {
		d.listeners = append(d.listeners, lfd)
		return d.ctl(unix.EPOLL_CTL_ADD, lfd, unix.EPOLLIN, tagListener)
	}
	i := slices.Index(d.paused, lfd)
	switch {
	case on && i >= 0:
		d.paused = slices.Delete(d.paused, i, i+1)
		return d.ctl(unix.EPOLL_CTL_MOD, lfd, unix.EPOLLIN, tagListener)
	case !on && i < 0:
		d.paused = append(d.paused, lfd)
		return d.ctl(unix.EPOLL_CTL_MOD, lfd, 0, tagListener)
	}
	return nil
}

func (d *epollDriver) attach(c *conn) error {
	return d.ctl(unix.EPOLL_CTL_ADD, c.fd, connEvents, c.gen)
}

// read reads once from c and hands the bytes on. A read that may have
// left bytes behind puts c on the ready list, to be read again on the
// next pass.
func (d *epollDriver) read(c *conn) {
	l := d.l
	want := l.s.chunk
	n, errno := rawRead(c.fd, d.buf[:want])
	if n > 0 {
		l.in += uint64(n)
		// A read that took less than it asked for emptied the socket; one
		// that filled the buffer may have left more behind, and after the
		// peer's FIN the end of input is still to be read.
		if c.rdReady = n == want || c.rdHup; c.rdReady {
			l.readLater(c)
		}
		l.input(c, d.buf[:n])
		return
	}
	c.rdReady = false
	if errno == unix.EAGAIN || errno == unix.EINTR {
		return
	}
	var reason error // nil: orderly close or half-close by the peer
	if errno != 0 {
		reason = fmt.Errorf("read: %w", errno)
	}
	l.inputEnded(c, reason)
}

// send writes what the socket takes of p now.
func (d *epollDriver) send(c *conn, p []byte) (int, error) {
	for {
		n, errno := rawWrite(c.fd, p)
		switch errno {
		case 0, unix.EAGAIN:
			return n, nil
		case unix.EINTR:
			continue
		}
		return 0, fmt.Errorf("write: %w", errno)
	}
}

// close closes c's socket, or lingers it when the server closes on its
// own while the peer may still send.
func (d *epollDriver) close(c *conn, peerSending bool) {
	if peerSending && c.closeReason() != nil {
		d.linger(c.fd)
		return
	}
	unix.Close(c.fd)
}

// stop ends the lingers at the shutdown deadline; until then the loop
// goes on while any lingers.
func (d *epollDriver) stop() bool {
	if d.l.expired {
		for fd := range d.lingering {
			d.endLinger(fd)
		}
		d.lingers = nil
	}
	return len(d.lingering) == 0
}

// linger ends a connection the server closed while the peer may still be
// sending: the write side is shut (a FIN after the farewell), and the
// socket stays open, dropping input, until the peer closes or CloseLinger
// passes. Linux would answer a close with unread input, or input arriving
// after it, with a reset that can cost the peer its farewell.
func (d *epollDriver) linger(fd int) {
	unix.Shutdown(fd, unix.SHUT_WR)
	if d.lingering == nil {
		d.lingering = map[int]int32{}
	}
	d.lingerGen++
	d.lingering[fd] = d.lingerGen
	d.lingers = append(d.lingers, lingerEnd{at: d.l.now() + outbuf.CloseLinger, fd: fd, gen: d.lingerGen})
	d.dropInput(fd)
}

// expireLingers ends the lingers whose time is up at now.
func (d *epollDriver) expireLingers(now time.Duration) {
	for len(d.lingers) > 0 && d.lingers[0].at <= now {
		e := d.lingers[0]
		d.lingers = d.lingers[1:]
		if gen, ok := d.lingering[e.fd]; ok && gen == e.gen {
			d.endLinger(e.fd)
		}
	}
	if len(d.lingers) == 0 {
		d.lingers = nil
	}
}

// dropInput reads and drops what a lingering socket holds, and closes it
// once the peer has closed (or the socket failed).
func (d *epollDriver) dropInput(fd int) {
	for {
		n, errno := rawRead(fd, d.buf)
		if n > 0 {
			continue
		}
		if errno != unix.EAGAIN {
			d.endLinger(fd)
		}
		return
	}
}

// endLinger closes a lingering socket.
func (d *epollDriver) endLinger(fd int) {
	delete(d.lingering, fd)
	unix.Close(fd)
}
