package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/tcplab/tcplab/internal/netstat"
)

// maxSources bounds the 127.0.0.x source addresses.
const maxSources = 254

// RaiseNofile raises this process's RLIMIT_NOFILE soft limit to the hard
// limit (each connection is a file descriptor) and returns both.
func RaiseNofile() (soft, hard uint64, err error) {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return 0, 0, fmt.Errorf("getrlimit nofile: %w", err)
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
			return r.Cur, r.Max, fmt.Errorf("setrlimit nofile %d: %w", r.Max, err)
		}
	}
	return r.Cur, r.Max, nil
}

// sources picks the local addresses connections come from: none (the
// kernel chooses) while conns fit one address's ephemeral ports, else
// 127.0.0.1 through 127.0.0.N when the server is on loopback. The warning
// is set when conns cannot fit.
func sources(addr string, conns, perSource int) (src []*net.TCPAddr, warning string, err error) {
	if perSource == 0 {
		r, err := netstat.LocalPortRange()
		if err != nil {
			return nil, "", err
		}
		perSource = r.Size()
	}
	if conns <= perSource {
		return nil, "", nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, "", fmt.Errorf("--addr %q: %w", addr, err)
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() == nil || !ip.IsLoopback() {
		return nil, fmt.Sprintf("%d connections exceed the %d ports of one source address, and extra sources need a 127.0.0.0/8 server", conns, perSource), nil
	}
	n := (conns + perSource - 1) / perSource
	if n > maxSources {
		warning = fmt.Sprintf("%d connections need %d source addresses; using %d", conns, n, maxSources)
		n = maxSources
	}
	for i := range n {
		src = append(src, &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(i+1))})
	}
	return src, warning, nil
}

// dialer returns the dialer for connection i.
func dialer(src []*net.TCPAddr, i int) *net.Dialer {
	d := &net.Dialer{}
	if len(src) > 0 {
		d.LocalAddr = src[i%len(src)]
	}
	return d
}

// Failure reasons, the keys of Result.Failures.
const (
	ReasonRefused  = "refused"  // nothing listening, or the server reset the handshake
	ReasonTimeout  = "timeout"  // no round trip within --connect-timeout, or a stalled read
	ReasonReset    = "reset"    // the server reset the connection
	ReasonClosed   = "closed"   // the server closed the connection
	ReasonNoPorts  = "no-ports" // no ephemeral port left on the source address
	ReasonNoFDs    = "no-fds"   // this process is out of file descriptors
	ReasonMismatch = "mismatch" // the echo differed from what was sent
	ReasonProtocol = "protocol" // a chat frame that breaks protocol v1
	ReasonFull     = "server-full"
	ReasonOther    = "other"
)

// errMismatch is an echo that is not what was sent.
var errMismatch = errors.New("echo differs from the message sent")

// errProtocol wraps a chat server's reply that breaks the protocol.
var errProtocol = errors.New("protocol error")

// reason classifies a connection's error for Result.Failures.
func reason(err error) string {
	var ne net.Error
	var se serverError
	switch {
	case errors.As(err, &se):
		return se.reason()
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReasonRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return ReasonReset
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return ReasonClosed
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return ReasonNoPorts
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return ReasonNoFDs
	case errors.Is(err, errMismatch):
		return ReasonMismatch
	case errors.Is(err, errProtocol):
		return ReasonProtocol
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return ReasonTimeout
	}
	return ReasonOther
}

// serverError is a chat server's ERR or BYE that ended a connection.
type serverError struct {
	verb, code string // "ERR" or "BYE", and its first word
}

func (e serverError) Error() string { return "server said " + e.verb + " " + e.code }

func (e serverError) reason() string {
	if e.verb == "ERR" && e.code == ReasonFull {
		return ReasonFull
	}
	return strings.ToLower(e.verb) + " " + e.code
}
