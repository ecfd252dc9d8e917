// Package echo is the Echo Protocol (RFC 862) as a handler.Handler: every
// byte received is sent back, whatever the size and however the bytes are
// split.
package echo

import "github.com/tcplab/tcplab/handler"

// New returns the echo handler.
func New() handler.Handler {
	return handler.Func(func(c handler.Conn) handler.Session { return session{c} })
}

type session struct{ c handler.Conn }

// Data writes every byte straight back. A Write error means the connection
// is already closing, so the bytes are consumed either way.
func (s session) Data(in []byte) (int, error) {
	s.c.Write(in)
	return len(in), nil
}

func (session) Closed(error) {}
