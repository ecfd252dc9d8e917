package reactor

import (
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file holds the socket system calls both drivers and the server
// make outside their kernel interface (epoll's reads and writes; the
// refusal and lingering paths of either). Calls that cannot block (read,
// write and accept4 on non-blocking sockets) go through unix.RawSyscall,
// which skips the Go scheduler's entersyscall/exitsyscall bookkeeping.

// one is what a wake-up writes to an eventfd.
var one = [8]byte{1}

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

// discardInput drops, without waiting, what the peer has sent and nobody
// read (up to 64 KiB), so that closing the socket sends a FIN after the
// last bytes written: Linux answers a close with unread input with a
// reset, which also discards output not yet sent (a farewell, say).
func discardInput(fd int) {
	var scratch [4096]byte
	for range 16 {
		if n, _ := rawRead(fd, scratch[:]); n <= 0 {
			break
		}
	}
}

func openSpare() int {
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}
