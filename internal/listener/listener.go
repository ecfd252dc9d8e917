// Package listener binds TCP listening sockets with a real listen(2)
// backlog. Go's net.Listen always passes somaxconn as the backlog
// (golang/go#39000), which hides the accept-queue size that the lab
// studies, so this package makes the socket itself.
package listener

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// SomaxconnPath is where Linux exposes the cap on listen backlogs.
const SomaxconnPath = "/proc/sys/net/core/somaxconn"

// Options says how to bind.
type Options struct {
	// Backlog is the accept-queue length passed to listen(2).
	Backlog int
	// ReusePort sets SO_REUSEPORT, so several sockets can bind one address
	// and the kernel spreads connections over them.
	ReusePort bool
	// Logger receives the warning when Backlog exceeds somaxconn. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// Somaxconn reads the kernel's backlog cap. It returns 0 if unknown.
func Somaxconn() int {
	b, err := os.ReadFile(SomaxconnPath)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return n
}

// FD binds addr and listens, returning the raw non-blocking, close-on-exec
// socket and the bound address. Event-loop models own the fd directly.
func FD(addr string, o Options) (int, *net.TCPAddr, error) {
	if o.Backlog < 1 {
		return -1, nil, fmt.Errorf("listen %s: backlog %d: must be at least 1", addr, o.Backlog)
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	if limit := Somaxconn(); limit > 0 && o.Backlog > limit {
		log.Warn("requested listen backlog exceeds net.core.somaxconn; the kernel caps it",
			"requested", o.Backlog, "somaxconn", limit)
	}
	tcpAddr, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return -1, nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	family, sa := sockaddr(tcpAddr)
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, nil, fmt.Errorf("listen %s: socket: %w", addr, err)
	}
	if err := setup(fd, sa, o); err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("listen %s: getsockname: %w", addr, err)
	}
	return fd, SockaddrToTCP(bound), nil
}

func setup(fd int, sa unix.Sockaddr, o Options) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fmt.Errorf("SO_REUSEADDR: %w", err)
	}
	if o.ReusePort {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fmt.Errorf("SO_REUSEPORT: %w", err)
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(fd, o.Backlog); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return nil
}

// Listen binds addr like FD and wraps the socket as a net.Listener, so
// blocking models can use Go's poller.
func Listen(addr string, o Options) (*net.TCPListener, error) {
	fd, _, err := FD(addr, o)
	if err != nil {
		return nil, err
	}
	return wrap(fd, addr)
}

// ListenN binds n listeners on addr. With n > 1 they share the address
// through SO_REUSEPORT; if addr asks for port 0, the first bind picks the
// port and the others join it.
func ListenN(addr string, n int, o Options) ([]*net.TCPListener, error) {
	fds, bound, err := FDs(addr, n, o)
	if err != nil {
		return nil, err
	}
	addr = bound.String()
	var lns []*net.TCPListener
	for i, fd := range fds {
		ln, err := wrap(fd, addr)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			for _, fd := range fds[i+1:] {
				unix.Close(fd)
			}
			return nil, err
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// FDs binds n raw listening sockets on addr like FD, sharing the address
// through SO_REUSEPORT when n > 1 (the first bind picks a port 0), and
// returns them with the bound address.
func FDs(addr string, n int, o Options) ([]int, *net.TCPAddr, error) {
	if n < 1 {
		return nil, nil, fmt.Errorf("listen %s: %d listeners: must be at least 1", addr, n)
	}
	if n > 1 {
		o.ReusePort = true
	}
	if o.ReusePort {
		if err := checkFree(addr); err != nil {
			return nil, nil, err
		}
	}
	var fds []int
	var bound *net.TCPAddr
	for i := range n {
		fd, a, err := FD(addr, o)
		if err != nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
			return nil, nil, err
		}
		if i == 0 {
			bound, addr = a, a.String()
		}
		fds = append(fds, fd)
	}
	return fds, bound, nil
}

// checkFree fails with EADDRINUSE if something already listens on addr.
// A socket with SO_REUSEPORT would otherwise join another process's
// listeners on it (same user) without a word, and the kernel would split
// new connections between two unrelated servers. It binds a probe socket
// without SO_REUSEPORT, which only a free address accepts, and closes it.
// Port 0 is always free.
func checkFree(addr string) error {
	tcpAddr, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	if tcpAddr.Port == 0 {
		return nil
	}
	family, sa := sockaddr(tcpAddr)
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return fmt.Errorf("listen %s: socket: %w", addr, err)
	}
	defer unix.Close(fd)
	// SO_REUSEADDR, as the real sockets have: connections of an earlier
	// server still in TIME_WAIT do not make the address busy.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fmt.Errorf("listen %s: SO_REUSEADDR: %w", addr, err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fmt.Errorf("listen %s: bind: %w", addr, err)
	}
	return nil
}

func wrap(fd int, addr string) (*net.TCPListener, error) {
	f := os.NewFile(uintptr(fd), "listener:"+addr)
	ln, err := net.FileListener(f)
	f.Close() // FileListener dup'ed it
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		ln.Close()
		return nil, errors.New("listen " + addr + ": not a TCP listener")
	}
	return tl, nil
}

func sockaddr(a *net.TCPAddr) (int, unix.Sockaddr) {
	if a.IP == nil || a.IP.To4() != nil {
		sa := &unix.SockaddrInet4{Port: a.Port}
		if a.IP != nil {
			copy(sa.Addr[:], a.IP.To4())
		}
		return unix.AF_INET, sa
	}
	sa := &unix.SockaddrInet6{Port: a.Port}
	copy(sa.Addr[:], a.IP.To16())
	if a.Zone != "" {
		if ifi, err := net.InterfaceByName(a.Zone); err == nil {
			sa.ZoneId = uint32(ifi.Index)
		}
	}
	return unix.AF_INET6, sa
}

// SockaddrToTCP converts a socket address from the unix package.
func SockaddrToTCP(sa unix.Sockaddr) *net.TCPAddr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IPv4(a.Addr[0], a.Addr[1], a.Addr[2], a.Addr[3]), Port: a.Port}
	case *unix.SockaddrInet6:
		ip := make(net.IP, net.IPv6len)
		copy(ip, a.Addr[:])
		return &net.TCPAddr{IP: ip, Port: a.Port}
	}
	return &net.TCPAddr{}
}
