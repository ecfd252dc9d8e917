// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)) from both ends: a service tells whoever started it that it
// is ready (Send), and a process that starts services waits for that
// (Listen, Receiver.Next) instead of scraping a log.
//
// The protocol: the service manager puts the path of a unix datagram socket
// in the service's environment, NOTIFY_SOCKET; a path that starts with "@"
// names a socket in the abstract namespace (the "@" stands for a NUL byte).
// The service sends datagrams of newline-separated KEY=VALUE lines:
// READY=1 once it serves, STATUS=free text, STOPPING=1 when it shuts down.
// Variables of one's own take an X_ prefix, which systemd ignores.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Env is the environment variable that names the notification socket.
const Env = "NOTIFY_SOCKET"

// State lines a service sends.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
)

// maxDatagram bounds one notification, as systemd does (its buffer is a
// page, less the header).
const maxDatagram = 4096

// Send sends the state lines (each KEY=VALUE, without a newline) as one
// datagram to the socket named by socket, the value of NOTIFY_SOCKET. An
// empty socket (no service manager listening) sends nothing and is not an
// error.
func Send(socket string, state ...string) error {
	if socket == "" {
		return nil
	}
	if err := checkSocket(socket); err != nil {
		return err
	}
	for _, s := range state {
		if k, _, ok := strings.Cut(s, "="); !ok || k == "" || strings.ContainsRune(s, '\n') {
			return fmt.Errorf("sd_notify: %q is not one KEY=VALUE line", s)
		}
	}
	msg := strings.Join(state, "\n") + "\n"
	if len(msg) > maxDatagram {
		return fmt.Errorf("sd_notify: message of %d bytes, past the %d a datagram may hold", len(msg), maxDatagram)
	}
	// Go's net package maps a leading "@" to the abstract namespace.
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %s=%s: %w", Env, socket, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		return fmt.Errorf("sd_notify: %s=%s: %w", Env, socket, err)
	}
	return nil
}

// checkSocket refuses a NOTIFY_SOCKET this package cannot send to: newer
// service managers also name vsock addresses, which it does not speak.
func checkSocket(socket string) error {
	if strings.HasPrefix(socket, "/") || strings.HasPrefix(socket, "@") {
		return nil
	}
	return fmt.Errorf("sd_notify: %s=%q: want an absolute path or an @abstract name", Env, socket)
}

// State is one notification: its KEY=VALUE lines by key.
type State map[string]string

// Parse reads a notification datagram. Lines without "=" are dropped, as
// systemd drops them.
func Parse(b []byte) State {
	st := State{}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "="); ok && k != "" {
			st[k] = v
		}
	}
	return st
}

// Receiver is the service manager's end: a datagram socket that services
// started with its Socket in NOTIFY_SOCKET notify.
type Receiver struct {
	c   *net.UnixConn
	dir string
}

// Listen makes a notification socket in a new directory only this user can
// enter, so no other user's process can send to it.
func Listen() (*Receiver, error) {
	dir, err := os.MkdirTemp("", "tcplab-notify-")
	if err != nil {
		return nil, fmt.Errorf("sd_notify socket: %w", err)
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "notify"), Net: "unixgram"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("sd_notify socket: %w", err)
	}
	return &Receiver{c: c, dir: dir}, nil
}

// Socket is the value to give a service as NOTIFY_SOCKET.
func (r *Receiver) Socket() string { return r.c.LocalAddr().String() }

// Next returns the next notification, waiting for it until deadline (the
// zero time waits without end, until Close). An error wraps
// os.ErrDeadlineExceeded when the deadline passed, net.ErrClosed after
// Close.
func (r *Receiver) Next(deadline time.Time) (State, error) {
	if err := r.c.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	buf := make([]byte, maxDatagram)
	for {
		n, _, err := r.c.ReadFromUnix(buf)
		if err != nil {
			return nil, fmt.Errorf("sd_notify: %w", err)
		}
		if n > 0 {
			return Parse(buf[:n]), nil
		}
	}
}

// Close closes the socket and removes its directory. A Next in progress
// returns an error wrapping net.ErrClosed.
func (r *Receiver) Close() error {
	return errors.Join(r.c.Close(), os.RemoveAll(r.dir))
}
