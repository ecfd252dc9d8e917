package serving

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/tcplab/tcplab/handler"
)

// This file holds the TLS mechanics every model shares: following TLS
// record boundaries under crypto/tls (the frame timeout covers a record
// trickled byte by byte, which crypto/tls would show nobody), and
// refusals sent over TLS at a bounded rate.

// RecordHeaderLen is the length of a TLS record's header: type, version,
// and the body's length.
const RecordHeaderLen = 5

// Records follows TLS record boundaries through a byte stream, a record
// at a time: a 5-byte header carrying the body's length, then the body.
// The zero value is at the start of a stream.
type Records struct {
	hdrN int // header bytes of the next record seen
	hdr  [RecordHeaderLen]byte
	left int // body bytes of the current record still to come
}

// Scan follows the boundaries through b, the stream's next bytes. It
// reports whether a record ended in b.
func (r *Records) Scan(b []byte) (completed bool) {
	for len(b) > 0 {
		if r.left > 0 {
			k := min(r.left, len(b))
			r.left -= k
			b = b[k:]
			completed = completed || r.left == 0
			continue
		}
		k := copy(r.hdr[r.hdrN:], b)
		r.hdrN += k
		b = b[k:]
		if r.hdrN == len(r.hdr) {
			r.hdrN = 0
			r.left = int(r.hdr[3])<<8 | int(r.hdr[4])
			completed = completed || r.left == 0
		}
	}
	return completed
}

// Partial reports whether a record has begun and not ended.
func (r *Records) Partial() bool { return r.hdrN > 0 || r.left > 0 }

// Header returns the type and body length of the record whose body is
// still arriving, and ok false if there is none (between records, or in
// a header).
func (r *Records) Header() (typ byte, length int, ok bool) {
	if r.left == 0 {
		return 0, 0, false
	}
	return r.hdr[0], int(r.hdr[3])<<8 | int(r.hdr[4]), true
}

// Refusals over TLS: at most MaxTLSRefusals handshakes run at once only to
// tell refused clients why, and at most TLSRefusalRate start a second (in
// bursts of MaxTLSRefusals); past either, a refused connection is just
// closed. Without the rate, an address over its connection rate could
// make the server do a handshake's crypto for every refusal, as fast as it
// connects.
const (
	MaxTLSRefusals = 16
	TLSRefusalRate = 16
)

// RefuseTimeout bounds the write of a refusal, so a peer that does not
// read cannot hold up whoever sends it.
const RefuseTimeout = 100 * time.Millisecond

// TLSRefusals sends refusals over TLS: a client of a TLS listener expects
// a handshake before any byte, so plaintext would be garbage to it (and
// the server never sends plaintext on a TLS listener). Each runs on a
// goroutine of its own, bounded as MaxTLSRefusals and TLSRefusalRate say,
// so whoever refuses does not wait for it. Every model with TLS refuses
// through one.
type TLSRefusals struct {
	conf    *tls.Config
	timeout time.Duration // the handshake's
	ctx     context.Context
	slots   chan struct{}
	rate    *rate.Limiter
	wg      sync.WaitGroup
}

// NewTLSRefusals returns the refusals of a server serving TLS with c (its
// TLS loaded: LoadTLS), whose handshakes end when ctx does; nil if c
// serves no TLS.
func NewTLSRefusals(ctx context.Context, c Config) *TLSRefusals {
	if c.tls == nil {
		return nil
	}
	return &TLSRefusals{
		conf:    c.tls,
		timeout: c.HandshakeTimeout,
		ctx:     ctx,
		slots:   make(chan struct{}, MaxTLSRefusals),
		rate:    rate.NewLimiter(TLSRefusalRate, MaxTLSRefusals),
	}
}

// Refuse sends msg, the refusal for reason, over TLS, on the connection
// open returns (which open closes if it fails), and then closes it. It
// reports false, without calling open, if no refusal is to be sent: for
// shutdown, with nothing to say, or past the bounds; the caller then just
// closes the connection.
func (r *TLSRefusals) Refuse(msg []byte, reason error, open func() (net.Conn, error)) bool {
	if len(msg) == 0 || errors.Is(reason, handler.ErrShutdown) || r.ctx.Err() != nil || !r.rate.Allow() {
		return false
	}
	select {
	case r.slots <- struct{}{}:
	default:
		return false
	}
	nc, err := open()
	if err != nil {
		<-r.slots
		return true
	}
	r.wg.Go(func() {
		defer func() { <-r.slots }()
		tc := tls.Server(nc, r.conf)
		if Handshake(r.ctx, tc, r.timeout) != nil {
			nc.Close()
			return
		}
		nc.SetWriteDeadline(time.Now().Add(RefuseTimeout))
		tc.Write(msg)
		DiscardReceived(nc)
		tc.Close() // close_notify, then the socket
	})
	return true
}

// Wait waits for the refusals under way; cancel their context first.
func (r *TLSRefusals) Wait() { r.wg.Wait() }

// Handshake runs tc's handshake, bounded by timeout and cut short when
// ctx ends.
func Handshake(ctx context.Context, tc *tls.Conn, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return tc.HandshakeContext(ctx)
}

// DiscardReceived drops, without waiting, the bytes the peer has already
// sent (up to 64 KiB), so that closing the socket ends the stream with a
// FIN after a refusal: Linux resets a connection closed with unread
// input, and a reset can cost the peer the refusal it has not read yet.
func DiscardReceived(nc net.Conn) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	var buf [4096]byte
	rc.Read(func(fd uintptr) bool {
		for range 16 {
			n, _, err := unix.Recvfrom(int(fd), buf[:], unix.MSG_DONTWAIT)
			if n <= 0 || err != nil {
				break
			}
		}
		return true // done: never wait for more
	})
}
