package chat

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/tcplab/tcplab/internal/english"
)

// Version is the protocol version the server announces in HELLO.
const Version = 1

// Limits on names.
const (
	MaxNick = 32 // a nick is 1 to MaxNick characters of [A-Za-z0-9_-]
	MaxRoom = 64 // a room is 1 to MaxRoom characters of the same set
)

// Lobby is the room every client starts in.
const Lobby = "lobby"

// Error codes, the second word of an "ERR <code> <detail>" frame. Codes
// that end a connection are also the reason in the "BYE <reason>" frame
// that follows.
const (
	CodeBadNick        = "bad-nick"
	CodeNickTaken      = "nick-taken"
	CodeBadRoom        = "bad-room"
	CodeNoSuchNick     = "no-such-nick"
	CodeUnknownCommand = "unknown-command"
	CodeUsage          = "usage"
	CodeFrameTooLarge  = "frame-too-large"
	CodeBadFrame       = "bad-frame"
	CodeBadUTF8        = "bad-utf8"
	CodeBadText        = "bad-text"
	CodeTooLong        = "too-long"
	CodeRateLimited    = "rate-limited"
	CodeSlowConsumer   = "slow-consumer"
	CodeServerFull     = "server-full"
	CodeTooManyConns   = "too-many-connections"
	CodeConnRate       = "connecting-too-fast"
	CodeUnavailable    = "unavailable"
)

// ErrorCodes lists every error code the server sends, in the order
// docs/protocol.md lists them.
func ErrorCodes() []string {
	return []string{
		CodeBadNick, CodeNickTaken, CodeBadRoom, CodeNoSuchNick, CodeUnknownCommand, CodeUsage,
		CodeFrameTooLarge, CodeBadFrame, CodeBadUTF8, CodeBadText, CodeTooLong,
		CodeRateLimited, CodeSlowConsumer, CodeServerFull, CodeTooManyConns, CodeConnRate, CodeUnavailable,
	}
}

// Reasons a BYE frame gives besides the error codes that close a
// connection (frame-too-large, bad-frame, slow-consumer, server-full).
const (
	ByeQuit         = "quit"
	ByeShuttingDown = "shutting-down"
	ByeIdleTimeout  = "idle-timeout"
	ByeFrameTimeout = "frame-timeout" // a frame begun was not finished within the engine's frame timeout
	ByeError        = "error"         // the engine closed the connection for another reason
)

// Error is a protocol error. The server sends it as "ERR <Code> <Detail>".
type Error struct {
	Code   string
	Detail string
}

// Error returns "<code>: <detail>".
func (e *Error) Error() string { return e.Code + ": " + e.Detail }

func protoErr(code, detail string) error { return &Error{Code: code, Detail: detail} }

// Op is what a client frame asks for.
type Op uint8

// The operations a client frame can ask for.
const (
	OpSay   Op = iota // a message to the current room
	OpNick            // /nick NAME
	OpJoin            // /join ROOM
	OpRooms           // /rooms
	OpWho             // /who
	OpMsg             // /msg NICK TEXT
	OpPing            // /ping
	OpQuit            // /quit
	OpHelp            // /help
)

// Command is a parsed client frame. Name and Text are sub-slices of the
// frame, so they are valid only as long as the frame is.
type Command struct {
	Op   Op
	Name []byte // OpNick: the new nick; OpJoin: the room; OpMsg: the recipient
	Text []byte // OpSay and OpMsg: the text, never empty
}

// command is one command: its word, its operation and its usage line
// ("" for a command that takes no argument).
type command struct {
	word  string
	op    Op
	usage string
}

// commands are the commands, in the order /help lists them.
func commands() [8]command {
	return [...]command{
		{"nick", OpNick, "/nick NAME"},
		{"join", OpJoin, "/join ROOM"},
		{"rooms", OpRooms, ""},
		{"who", OpWho, ""},
		{"msg", OpMsg, "/msg NICK TEXT"},
		{"ping", OpPing, ""},
		{"help", OpHelp, ""},
		{"quit", OpQuit, ""},
	}
}

// lookupCommand returns a command word's operation and its usage line
// ("" for a command that takes no argument).
func lookupCommand(word []byte) (op Op, usage string, ok bool) {
	for _, c := range commands() {
		if string(word) == c.word {
			return c.op, c.usage, true
		}
	}
	return 0, "", false
}

// Commands lists the commands as "/help" answers them: "/nick", "/join",
// ...
func Commands() []string {
	var words []string
	for _, c := range commands() {
		words = append(words, "/"+c.word)
	}
	return words
}

// maxDetail bounds the part of the client's input an error detail quotes.
const maxDetail = 64

// ParseCommand parses one client frame. p must not be empty. The grammar:
//
//	//TEXT          say "/TEXT" to the room
//	/WORD           a command with no argument (rooms, who, ping, help, quit)
//	/WORD REST      a command with an argument: one space, then REST
//	/msg NICK TEXT  NICK, one space, then TEXT (kept exactly, spaces and all)
//	TEXT            anything else is said to the room
//
// A command word is case-sensitive. A TEXT may hold no control character
// but TAB (see ValidText). The error is an *Error whose Code is
// unknown-command, usage, bad-nick, bad-room or bad-text. ParseCommand does
// not check UTF-8.
func ParseCommand(p []byte) (Command, error) {
	if len(p) == 0 || p[0] != '/' {
		return say(p)
	}
	if len(p) > 1 && p[1] == '/' {
		return say(p[1:])
	}
	word, rest, hasArg := bytes.Cut(p[1:], []byte{' '})
	op, usage, ok := lookupCommand(word)
	if !ok {
		return Command{}, protoErr(CodeUnknownCommand, quote(p[:1+len(word)]))
	}
	if usage == "" {
		if len(rest) > 0 {
			return Command{}, protoErr(CodeUsage, "/"+string(word)+" takes no argument")
		}
		return Command{Op: op}, nil
	}
	if !hasArg || len(rest) == 0 {
		return Command{}, protoErr(CodeUsage, usage)
	}
	switch op {
	case OpNick:
		if !ValidNick(rest) {
			return Command{}, protoErr(CodeBadNick, badNickDetail(rest))
		}
		return Command{Op: OpNick, Name: rest}, nil
	case OpJoin:
		if !ValidRoom(rest) {
			return Command{}, protoErr(CodeBadRoom, badRoomDetail(rest))
		}
		return Command{Op: OpJoin, Name: rest}, nil
	default: // OpMsg
		nick, text, _ := bytes.Cut(rest, []byte{' '})
		if !ValidNick(nick) {
			return Command{}, protoErr(CodeBadNick, badNickDetail(nick))
		}
		if len(text) == 0 {
			return Command{}, protoErr(CodeUsage, usage)
		}
		if err := checkText(text); err != nil {
			return Command{}, err
		}
		return Command{Op: OpMsg, Name: nick, Text: text}, nil
	}
}

// say is the command that says text to the room, if text may be said.
func say(text []byte) (Command, error) {
	if err := checkText(text); err != nil {
		return Command{}, err
	}
	return Command{Op: OpSay, Text: text}, nil
}

// checkText returns a bad-text error if text holds a control character
// other than TAB.
func checkText(text []byte) error {
	c, i := firstControl(text)
	if i < 0 {
		return nil
	}
	return protoErr(CodeBadText, fmt.Sprintf("control character U+%04X at byte %d: a message may hold no control character but TAB", c, i))
}

// ValidText reports whether b may be a message's text: it holds no
// control character other than TAB, that is none of U+0000 to U+001F but
// U+0009, no DEL (U+007F) and none of U+0080 to U+009F. Those would reach
// other people's terminals as they are (escape sequences, a carriage
// return that overwrites a line, a newline that starts a fake one). It
// does not check that b is UTF-8.
func ValidText(b []byte) bool {
	_, i := firstControl(b)
	return i < 0
}

// firstControl returns the first control character in b that a text may
// not hold, and its byte offset; -1 if there is none. A C1 control is
// two bytes in UTF-8, 0xC2 then 0x80 to 0x9F; 0xC2 is only ever a
// leading byte, so a byte scan finds them.
func firstControl(b []byte) (rune, int) {
	for i, c := range b {
		switch {
		case c < 0x20 && c != '\t', c == 0x7f:
			return rune(c), i
		case c == 0xc2 && i+1 < len(b) && b[i+1] >= 0x80 && b[i+1] <= 0x9f:
			return rune(b[i+1]), i
		}
	}
	return 0, -1
}

func badNickDetail(b []byte) string {
	return quote(b) + ": a nick is 1 to " + strconv.Itoa(MaxNick) + " characters of A-Z a-z 0-9 _ -"
}

func badRoomDetail(b []byte) string {
	return quote(b) + ": a room is 1 to " + strconv.Itoa(MaxRoom) + " characters of A-Z a-z 0-9 _ -"
}

// quote returns b for an error detail (english.Quote): cut short, with
// control characters shown as "?".
func quote(b []byte) string { return english.Quote(b, maxDetail) }

// ValidNick reports whether b is a well-formed nick.
func ValidNick(b []byte) bool { return validName(b, MaxNick) }

// ValidRoom reports whether b is a well-formed room name.
func ValidRoom(b []byte) bool { return validName(b, MaxRoom) }

func validName(b []byte, max int) bool {
	if len(b) == 0 || len(b) > max {
		return false
	}
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
