package work

import (
	"bytes"
	"strconv"
	"time"

	"github.com/tcplab/tcplab/app/chat"
	"github.com/tcplab/tcplab/internal/english"
)

// Error codes, the second word of an "ERR <code> <detail>" frame. They are
// the chat's codes (package chat) where the meaning is the same, plus
// too-much.
const (
	CodeTooMuch        = "too-much"              // a number over its limit (--max-sha, --max-sleep, the reply size)
	CodeUsage          = chat.CodeUsage          // a malformed or missing argument
	CodeUnknownCommand = chat.CodeUnknownCommand // a verb that is not sha, sleep or echo
	CodeBadUTF8        = chat.CodeBadUTF8        // a frame that is not valid UTF-8
	CodeFrameTooLarge  = chat.CodeFrameTooLarge  // a frame over the limit; closes the connection
	CodeBadFrame       = chat.CodeBadFrame       // a length header of 0; closes the connection
)

// ErrorCodes lists every error code a request or a frame can get, in the
// order docs/work-protocol.md lists them.
func ErrorCodes() []string {
	return []string{CodeTooMuch, CodeUsage, CodeUnknownCommand, CodeBadUTF8, CodeFrameTooLarge, CodeBadFrame}
}

// Verb is what a request asks for.
type Verb uint8

// The verbs.
const (
	VerbSha   Verb = iota + 1 // sha N TEXT
	VerbSleep                 // sleep US
	VerbEcho                  // echo TEXT
)

// Usage lines, as "ERR usage" quotes them.
const (
	usageSha   = "sha N TEXT"
	usageSleep = "sleep US"
	usageEcho  = "echo TEXT"
)

// Request is a parsed request. Text is a sub-slice of the frame, valid
// only as long as the frame is.
type Request struct {
	Verb Verb
	// Rounds is sha's N: how many times SHA-256 is applied.
	Rounds int
	// Sleep is sleep's US, as a duration.
	Sleep time.Duration
	// Text is sha's and echo's TEXT: the rest of the frame after one
	// space, never empty.
	Text []byte
}

// Limits bound what a request may ask for.
type Limits struct {
	// MaxSha is the largest N of "sha N TEXT".
	MaxSha int
	// MaxSleep is the longest "sleep US", whole microseconds.
	MaxSleep time.Duration
}

// Error is a refused request. The server sends it as "ERR <Code> <Detail>"
// and keeps the connection open.
type Error struct {
	Code   string
	Detail string
}

// Error returns "<code>: <detail>".
func (e *Error) Error() string { return e.Code + ": " + e.Detail }

func reqErr(code, detail string) *Error { return &Error{Code: code, Detail: detail} }

// maxDetail bounds the part of the client's input an error detail quotes.
const maxDetail = 64

// ParseRequest parses one request frame under the limits. The grammar
// (docs/work-protocol.md), fields separated by one space:
//
//	sha N TEXT    N: 1 to MaxSha, decimal digits; TEXT: the rest, not empty
//	sleep US      US: 0 to MaxSleep in microseconds, decimal digits
//	echo TEXT     TEXT: the rest, not empty
//
// Verbs are case-sensitive. The error is an *Error whose Code is
// unknown-command, usage or too-much. ParseRequest does not check UTF-8.
func ParseRequest(p []byte, lim Limits) (Request, *Error) {
	verb, rest, hasArg := bytes.Cut(p, []byte{' '})
	switch string(verb) {
	case "sha":
		num, text, hasText := bytes.Cut(rest, []byte{' '})
		if !hasArg || !hasText || len(text) == 0 {
			return Request{}, reqErr(CodeUsage, usageSha)
		}
		n, err := parseCount("sha", "N", num, int64(lim.MaxSha), 1)
		if err != nil {
			return Request{}, err
		}
		return Request{Verb: VerbSha, Rounds: int(n), Text: text}, nil
	case "sleep":
		if !hasArg {
			return Request{}, reqErr(CodeUsage, usageSleep)
		}
		us, err := parseCount("sleep", "US", rest, lim.MaxSleep.Microseconds(), 0)
		if err != nil {
			return Request{}, err
		}
		return Request{Verb: VerbSleep, Sleep: time.Duration(us) * time.Microsecond}, nil
	case "echo":
		if !hasArg || len(rest) == 0 {
			return Request{}, reqErr(CodeUsage, usageEcho)
		}
		return Request{Verb: VerbEcho, Text: rest}, nil
	}
	return Request{}, reqErr(CodeUnknownCommand, quote(verb))
}

// parseCount reads a decimal count from least to most for verb's argument
// arg: "ERR usage" for anything but digits (a sign, a space, nothing) or
// a count under least, "ERR too-much" for one over most, however many
// digits it has.
func parseCount(verb, arg string, b []byte, most, least int64) (int64, *Error) {
	usage := func() *Error {
		return reqErr(CodeUsage, verb+" "+arg+": "+arg+" is a whole number from "+strconv.FormatInt(least, 10)+" to "+strconv.FormatInt(most, 10)+", got "+quote(b))
	}
	if len(b) == 0 {
		return 0, usage()
	}
	var n int64
	over := false
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, usage()
		}
		if !over {
			n = n*10 + int64(c-'0')
			over = n > most
		}
	}
	if over {
		return 0, reqErr(CodeTooMuch, verb+" "+quote(b)+": the most is "+strconv.FormatInt(most, 10))
	}
	if n < least {
		return 0, usage()
	}
	return n, nil
}

// quote returns b for an error detail, as chat does (english.Quote):
// valid UTF-8 of at most maxDetail bytes, cut on a character boundary
// and ending with "..." if b is longer, with invalid bytes and control
// characters shown as "?".
func quote(b []byte) string { return english.Quote(b, maxDetail) }

// AppendRequest appends the request frame's payload for r to dst: the
// inverse of ParseRequest for a valid r.
func AppendRequest(dst []byte, r Request) []byte {
	switch r.Verb {
	case VerbSha:
		dst = append(dst, "sha "...)
		dst = strconv.AppendInt(dst, int64(r.Rounds), 10)
		dst = append(dst, ' ')
		return append(dst, r.Text...)
	case VerbSleep:
		dst = append(dst, "sleep "...)
		return strconv.AppendInt(dst, r.Sleep.Microseconds(), 10)
	case VerbEcho:
		dst = append(dst, "echo "...)
		return append(dst, r.Text...)
	}
	return dst
}

// AppendReply appends the payload of the reply the server sends to a valid
// r: "OK <hex of hN>", "OK slept US" or "OK TEXT". For sha it computes
// the N rounds.
func AppendReply(dst []byte, r Request) []byte {
	dst = append(dst, "OK "...)
	switch r.Verb {
	case VerbSha:
		return AppendHex(dst, Sum(r.Rounds, r.Text))
	case VerbSleep:
		dst = append(dst, "slept "...)
		return strconv.AppendInt(dst, r.Sleep.Microseconds(), 10)
	}
	return append(dst, r.Text...)
}
