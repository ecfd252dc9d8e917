package engine

import (
	"crypto/tls"
	"net"
	"sync"

	"github.com/tcplab/tcplab/internal/serving"
)

// This file holds what the blocking models do between accept and Open, and
// instead of it: the per-address limits (internal/admit) and the TLS
// handshake; refusals over TLS go through serving.TLSRefusals. The event
// loops do the same in internal/reactor with the same limiter and
// refusals.

// admittedConn is an accepted connection counted against its client
// address's limits. Close gives the slot back, once.
type admittedConn struct {
	*net.TCPConn
	release func()
	once    sync.Once
}

func (c *admittedConn) Close() error {
	c.once.Do(c.release) // first: the slot is free by the time the peer sees the close
	return c.TCPConn.Close()
}

// tcpConn returns the TCP connection under nc.
func tcpConn(nc net.Conn) (*net.TCPConn, bool) {
	switch c := nc.(type) {
	case *net.TCPConn:
		return c, true
	case *admittedConn:
		return c.TCPConn, true
	}
	return nil, false
}

// rawConn returns the connection under TLS, or nc itself.
func rawConn(nc net.Conn) net.Conn {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if rc, ok := nc.(*recordConn); ok {
		nc = rc.Conn
	}
	return nc
}

// recordClock returns the TLS record clock under nc, or nil.
func recordClock(nc net.Conn) *recordConn {
	if tc, ok := nc.(*tls.Conn); ok {
		rc, _ := tc.NetConn().(*recordConn)
		return rc
	}
	return nil
}

// admit applies the per-address limits to a connection just accepted. It
// returns the connection to serve, whose Close gives its slot back, or
// false after refusing it.
func (s *streamSet) admit(nc net.Conn) (net.Conn, bool) {
	if s.limiter == nil {
		return nc, true
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nc, true
	}
	a := tc.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
	if s.limiter.Exempt(a) {
		return nc, true
	}
	if err := s.limiter.Admit(a); err != nil {
		s.refuse(nc, err)
		return nil, false
	}
	return &admittedConn{TCPConn: tc, release: func() { s.limiter.Release(a) }}, true
}

// handshake runs the server side of the TLS handshake on a connection
// about to be served, bounded by Config.HandshakeTimeout and cut short by
// shutdown. On failure it counts the error, closes the connection and
// returns false.
func (s *streamSet) handshake(nc net.Conn) (net.Conn, bool) {
	under := nc
	if s.cfg.FrameTimeout > 0 {
		under = &recordConn{Conn: nc, timeout: s.cfg.FrameTimeout}
	}
	tc := tls.Server(under, serving.TLSConfig(s.cfg))
	if err := s.tlsHandshake(tc); err != nil {
		s.stats.HandshakeErrors.Add(1)
		s.cfg.Logger.Debug("TLS handshake failed", "remote", nc.RemoteAddr().String(), "err", err)
		nc.Close()
		return nil, false
	}
	return tc, true
}

func (s *streamSet) tlsHandshake(tc *tls.Conn) error {
	return serving.Handshake(s.ctx, tc, s.cfg.HandshakeTimeout)
}
