package reactor

import (
	"fmt"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file holds every system call the loops make. Calls that cannot
// block (read, write and accept4 on non-blocking sockets, epoll_ctl, the
// eventfd) go through unix.RawSyscall, which skips the Go scheduler's
// entersyscall/exitsyscall bookkeeping; only epoll_wait, which sleeps,
// takes the normal path so the runtime can run other goroutines meanwhile.

// Tags in the 32-bit Pad word of an epoll event say what the fd is. A
// connection's tag is its positive generation, so an event for a closed fd
// whose number was reused is recognised as stale and ignored.
const (
	tagWake     int32 = 0
	tagListener int32 = -1
)

// poller is one epoll instance and the eventfd that wakes it.
type poller struct {
	epfd int
	efd  int
}

func newPoller() (poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return poller{}, fmt.Errorf("epoll_create1: %w", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return poller{}, fmt.Errorf("eventfd: %w", err)
	}
	p := poller{epfd: epfd, efd: efd}
	if err := p.ctl(unix.EPOLL_CTL_ADD, efd, unix.EPOLLIN, tagWake); err != nil {
		p.close()
		return poller{}, err
	}
	return p, nil
}

func (p poller) close() {
	unix.Close(p.efd)
	unix.Close(p.epfd)
}

// ctl adds, modifies or deletes fd's registration; events says the
// trigger mode (connections are edge-triggered, see connEvents).
func (p poller) ctl(op, fd int, events uint32, tag int32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd), Pad: tag}
	if err := unix.EpollCtl(p.epfd, op, fd, &ev); err != nil { // a raw syscall in x/sys/unix
		return fmt.Errorf("epoll_ctl fd %d: %w", fd, err)
	}
	return nil
}

// wait sleeps until events arrive or msec passes (-1: no limit).
func (p poller) wait(events []unix.EpollEvent, msec int) (int, error) {
	n, err := unix.EpollWait(p.epfd, events, msec)
	if err != nil {
		if err == unix.EINTR {
			return 0, nil
		}
		return 0, fmt.Errorf("epoll_wait: %w", err)
	}
	return n, nil
}

var one = [8]byte{1}

// wake makes the eventfd readable, waking a wait in progress.
func (p poller) wake() {
	unix.RawSyscall(unix.SYS_WRITE, uintptr(p.efd), uintptr(unsafe.Pointer(&one[0])), 8)
}

// drainWake resets the eventfd after a wake-up.
func (p poller) drainWake(scratch *[8]byte) {
	unix.RawSyscall(unix.SYS_READ, uintptr(p.efd), uintptr(unsafe.Pointer(&scratch[0])), 8)
}

// rawRead and rawWrite use recvfrom and sendto rather than read and
// write: MSG_NOSIGNAL turns a write to a reset connection into EPIPE
// instead of a SIGPIPE for the runtime to field.
func rawRead(fd int, p []byte) (int, unix.Errno) {
	r, _, e := syscall.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0, 0, 0)
	if e != 0 {
		return 0, unix.Errno(e)
	}
	return int(r), 0
}

func rawWrite(fd int, p []byte) (int, unix.Errno) {
	r, _, e := syscall.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), unix.MSG_NOSIGNAL, 0, 0)
	if e != 0 {
		return 0, unix.Errno(e)
	}
	return int(r), 0
}

// rawAccept accepts one connection as a non-blocking, close-on-exec
// socket and returns it with the peer's address.
func rawAccept(lfd int, sa *unix.RawSockaddrAny) (int, netip.AddrPort, unix.Errno) {
	n := uint32(unix.SizeofSockaddrAny)
	r, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(sa)),
		uintptr(unsafe.Pointer(&n)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, netip.AddrPort{}, e
	}
	return int(r), addrPort(sa), 0
}

// localAddr asks the kernel for a socket's own address.
func localAddr(fd int, sa *unix.RawSockaddrAny) netip.AddrPort {
	return sockName(unix.SYS_GETSOCKNAME, fd, sa)
}

// peerAddr asks the kernel for a socket's peer address.
func peerAddr(fd int, sa *unix.RawSockaddrAny) netip.AddrPort {
	return sockName(unix.SYS_GETPEERNAME, fd, sa)
}

// sockName makes getsockname or getpeername (trap) on fd.
func sockName(trap uintptr, fd int, sa *unix.RawSockaddrAny) netip.AddrPort {
	n := uint32(unix.SizeofSockaddrAny)
	_, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(sa)), uintptr(unsafe.Pointer(&n)))
	if e != 0 {
		return netip.AddrPort{}
	}
	return addrPort(sa)
}

// setNoDelay turns Nagle's algorithm off, as Go's net package does for
// every TCP connection, so the models compare like with like.
func setNoDelay(fd int) {
	v := int32(1)
	unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY,
		uintptr(unsafe.Pointer(&v)), 4, 0)
}

// addrPort converts a kernel socket address (port in network byte order).
func addrPort(sa *unix.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		a := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&a.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET6:
		a := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&a.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}

// sockError returns a socket's pending error (SO_ERROR), or fallback.
func sockError(fd int, fallback error) error {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && v != 0 {
		return unix.Errno(v)
	}
	return fallback
}
