package natsbus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/tcplab/tcplab/app/chat"
)

// An event travels as one NATS message payload:
//
//	byte  0       wireVersion
//	byte  1       kind (chat.EventKind)
//	bytes 2..9    origin node, big-endian
//	bytes 10..17  origin connection
//	bytes 18..25  epoch: the origin's sequence for this room restarted
//	bytes 26..33  sequence number in the epoch; 0 for an unsequenced event
//	byte  34      length of the nick, then the nick
//	byte          length of the room (or the recipient of a PRIV), then it
//	rest          MSG and PRIV: the text, valid UTF-8; JOIN, LEAVE and
//	              COUNT: the origin's members of the room after it
//	              (chat.Event.Members) in decimal, or nothing (0). A build
//	              before the presence limit sent nothing there, and refuses
//	              a JOIN or LEAVE with a count, and a COUNT, as malformed.
//
// A COUNT (chat.EventCount) has an empty nick. with no control
//
//	character but TAB (chat.ValidText)
const (
	wireVersion = 1
	headerLen   = 34
)

// EventOverhead is the most by which an event's NATS payload is longer
// than the MSG or PRIV frame it carries: the wire header and two name
// lengths, less the frame's "PRIV " and two spaces, plus a private
// message's recipient (a MSG's payload is 30 bytes longer than its frame,
// a PRIV's 30 plus the recipient's nick). A NATS server whose max payload
// is P carries every message frame up to P - EventOverhead bytes.
const EventOverhead = headerLen + 2 - len("PRIV  ") + chat.MaxNick

// position is an event's place in its origin's sequence for one room.
type position struct {
	epoch uint64
	seq   uint64 // 0: unsequenced
}

var errBadEvent = errors.New("natsbus: malformed event")

// appendEvent encodes ev at pos onto dst.
func appendEvent(dst []byte, ev *chat.Event, pos position) []byte {
	name := ev.Room
	if ev.Kind == chat.EventPriv {
		name = ev.To
	}
	dst = append(dst, wireVersion, byte(ev.Kind))
	dst = binary.BigEndian.AppendUint64(dst, ev.Origin.Node)
	dst = binary.BigEndian.AppendUint64(dst, ev.Origin.Conn)
	dst = binary.BigEndian.AppendUint64(dst, pos.epoch)
	dst = binary.BigEndian.AppendUint64(dst, pos.seq)
	dst = append(dst, byte(len(ev.Nick)))
	dst = append(dst, ev.Nick...)
	dst = append(dst, byte(len(name)))
	dst = append(dst, name...)
	if presence(ev.Kind) {
		if ev.Members > 0 {
			dst = strconv.AppendInt(dst, int64(ev.Members), 10)
		}
		return dst
	}
	return append(dst, ev.Text...)
}

// decodeEvent decodes a payload. The event's Text is a sub-slice of p.
// Every name is checked as the chat checks a client's, so a payload from a
// foreign or broken publisher cannot put a malformed frame on a client's
// connection.
func decodeEvent(p []byte) (chat.Event, position, error) {
	var ev chat.Event
	var pos position
	if len(p) < headerLen+2 || p[0] != wireVersion {
		return ev, pos, errBadEvent
	}
	ev.Kind = chat.EventKind(p[1])
	ev.Origin.Node = binary.BigEndian.Uint64(p[2:])
	ev.Origin.Conn = binary.BigEndian.Uint64(p[10:])
	pos.epoch = binary.BigEndian.Uint64(p[18:])
	pos.seq = binary.BigEndian.Uint64(p[26:])
	rest := p[headerLen:]
	nick, rest, ok := cutName(rest)
	count := ev.Kind == chat.EventCount // a node's count has no nick
	if !ok || count != (len(nick) == 0) || !count && !chat.ValidNick(nick) {
		return ev, pos, fmt.Errorf("%w: bad nick", errBadEvent)
	}
	name, rest, ok := cutName(rest)
	if !ok {
		return ev, pos, fmt.Errorf("%w: truncated", errBadEvent)
	}
	ev.Nick = string(nick)
	switch ev.Kind {
	case chat.EventMsg, chat.EventJoin, chat.EventLeave, chat.EventCount:
		if !chat.ValidRoom(name) {
			return ev, pos, fmt.Errorf("%w: bad room", errBadEvent)
		}
		ev.Room = string(name)
	case chat.EventPriv:
		if !chat.ValidNick(name) {
			return ev, pos, fmt.Errorf("%w: bad recipient", errBadEvent)
		}
		ev.To = string(name)
	default:
		return ev, pos, fmt.Errorf("%w: kind %d", errBadEvent, ev.Kind)
	}
	if presence(ev.Kind) {
		if len(rest) > 0 {
			n, err := strconv.ParseUint(string(rest), 10, 31)
			if err != nil || rest[0] == '0' {
				return ev, pos, fmt.Errorf("%w: bad member count", errBadEvent)
			}
			ev.Members = int(n)
		}
		return ev, pos, nil
	}
	if len(rest) == 0 || !utf8.Valid(rest) || !chat.ValidText(rest) {
		return ev, pos, fmt.Errorf("%w: bad text", errBadEvent)
	}
	ev.Text = rest
	return ev, pos, nil
}

// presence reports whether kind carries a member count (chat.Event.Members)
// rather than a text.
func presence(kind chat.EventKind) bool {
	return kind == chat.EventJoin || kind == chat.EventLeave || kind == chat.EventCount
}

// cutName splits a length-prefixed name off p.
func cutName(p []byte) (name, rest []byte, ok bool) {
	if len(p) < 1 || len(p) < 1+int(p[0]) {
		return nil, nil, false
	}
	n := int(p[0])
	return p[1 : 1+n], p[1+n:], true
}
