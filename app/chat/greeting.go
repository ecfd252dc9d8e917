package chat

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/tcplab/tcplab/frame"
)

// A chat server speaks first: its first frame is "HELLO tcplab 1 <nick>",
// or the "ERR ..." or "BYE ..." of a connection it refuses. So a client can
// tell from the first bytes which framing the server speaks, and say so,
// rather than read a line as a length header ("frame too large: length
// header says 1212501068 bytes": "HELL") or wait for a newline that a
// length-framed server never sends.

// greetingSniff is how many bytes GreetingFraming needs to recognize a
// HELLO in either framing: a length header and "HELLO tcplab ".
const greetingSniff = frame.HeaderLen + len("HELLO tcplab ")

// startsGreeting reports whether p starts with what a server's first
// frame starts with.
func startsGreeting(p []byte) bool {
	return bytes.HasPrefix(p, []byte("HELLO tcplab ")) || bytes.HasPrefix(p, []byte("ERR ")) || bytes.HasPrefix(p, []byte("BYE "))
}

// GreetingFraming reports whether b, the first bytes a server sent, are a
// chat server's first frame, and in which framing.
func GreetingFraming(b []byte) (frame.Kind, bool) {
	switch {
	case startsGreeting(b):
		return frame.Line, true
	case len(b) > frame.HeaderLen && startsGreeting(b[frame.HeaderLen:]):
		return frame.Length, true
	}
	return "", false
}

// FramingError is SniffGreeting's error for a server that speaks the
// other framing.
type FramingError struct {
	Server frame.Kind // the framing the server speaks
}

// Error says which framing to use: "the server speaks line framing: try
// --framing line".
func (e *FramingError) Error() string {
	return fmt.Sprintf("the server speaks %s framing: try --framing %s", e.Server, e.Server)
}

// SniffGreeting reads the first bytes a chat server sends on r, enough to
// tell its framing (less if the server closes first), and returns a reader
// that yields them again and then the rest of r. If they are a chat
// greeting in the other framing than kind, the error is a *FramingError.
// An error reading r (a timeout: the server said nothing) is returned
// wrapped.
func SniffGreeting(r io.Reader, kind frame.Kind) (io.Reader, error) {
	buf := make([]byte, 4*greetingSniff)
	n, err := io.ReadAtLeast(r, buf, greetingSniff)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("no greeting from the server: %w", err)
	}
	if k, ok := GreetingFraming(buf[:n]); ok && k != kind {
		return nil, &FramingError{Server: k}
	}
	return io.MultiReader(bytes.NewReader(buf[:n]), r), nil
}
