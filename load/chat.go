package load

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcplab/tcplab/app/chat"
	"github.com/tcplab/tcplab/frame"
)

// chatGrace bounds how long receivers may keep draining after the senders
// stop; the run ends sooner once every message has arrived.
const chatGrace = 2 * time.Second

// stampPrefix starts the text of every message the generator sends:
// "lt <due_ns> <sent_ns> " then padding, the times counted from the run's
// start. Receivers take their latency from it.
const stampPrefix = "lt "

// chatRun is a chat run's state once connections are up.
type chatRun struct {
	r       *run
	members []*member
	mu      sync.Mutex
	errs    map[string]int // ERR codes received
}

// member is one connection in the room.
type member struct {
	i        int
	c        *conn
	fr       *frame.Reader
	sender   bool
	sent     atomic.Uint64 // messages written
	rejected atomic.Uint64 // of those, refused with ERR (rate-limited, ...)
	received atomic.Uint64 // messages from others delivered to it
	dropped  atomic.Bool
}

// runChat connects every member, then lets the senders post for
// Duration, then drains.
func (r *run) runChat() *chatRun {
	ch := &chatRun{r: r, errs: map[string]int{}}
	var wg sync.WaitGroup
	slots := make([]*member, r.cfg.Conns)
	for i := range r.cfg.Conns {
		wg.Go(func() {
			if !r.sleepUntil(r.slotStart(i)) {
				return
			}
			m, err := r.joinChat(i)
			if err != nil {
				if r.ctx.Err() == nil {
					r.fail(err, false)
				}
				return
			}
			r.succeeded()
			slots[i] = m
		})
	}
	wg.Wait()
	for _, m := range slots {
		if m != nil {
			ch.members = append(ch.members, m)
		}
	}
	// Everyone who could join has; the measured window starts now, so each
	// receiver is present for every message.
	r.sendStart = time.Now()
	r.deadline = r.sendStart.Add(r.cfg.Duration)
	var senders, receivers sync.WaitGroup
	for k, m := range ch.members {
		m.c.setDeadline(time.Time{})
		m.c.SetWriteDeadline(r.deadline)
		receivers.Go(func() { ch.receive(m) })
		if k < r.cfg.Senders {
			m.sender = true
			senders.Go(func() { ch.send(m, k) })
		}
	}
	senders.Wait()
	r.sleepUntil(r.deadline) // a sender stops at its last due time before it
	ch.drain()
	for _, m := range ch.members {
		m.c.setDeadline(time.Unix(1, 0)) // wakes the receiver; the run is over
	}
	receivers.Wait()
	for _, m := range ch.members {
		m.c.Close()
	}
	return ch
}

// joinChat dials, waits for the server's HELLO, and joins the room if it
// is not the one the server starts everyone in, all within the connect
// timeout. A greeting in the other framing fails the connection at once,
// naming the framing to use.
func (r *run) joinChat(i int) (*member, error) {
	c, _, err := r.dial(i)
	if err != nil {
		return nil, err
	}
	in, err := chat.SniffGreeting(c, r.cfg.Framing)
	if err != nil {
		c.Close()
		if fe := (*chat.FramingError)(nil); errors.As(err, &fe) {
			err = fmt.Errorf("%w: %w", errProtocol, err)
		}
		return nil, err
	}
	fr, err := frame.NewReader(in, r.cfg.Framing, 0)
	if err != nil {
		c.Close()
		return nil, err
	}
	m := &member{i: i, c: c, fr: fr}
	if err := m.hello(); err != nil {
		c.Close()
		return nil, err
	}
	if r.cfg.Room != DefaultRoom {
		if err := m.join(r.cfg.Framing, r.cfg.Room); err != nil {
			c.Close()
			return nil, err
		}
	}
	return m, nil
}

// hello reads the greeting: "HELLO tcplab 1 <nick>".
func (m *member) hello() error {
	p, err := m.fr.Next()
	if err != nil {
		return err
	}
	f := parseServerFrame(p)
	switch {
	case f.verb == "HELLO" && f.a == "tcplab" && f.b == "1" && f.rest != "":
		return nil
	case f.verb == "ERR" || f.verb == "BYE":
		return serverError{f.verb, f.a}
	}
	return fmt.Errorf("%w: first frame %q, want HELLO tcplab 1 <nick>", errProtocol, clip(p))
}

// join sends "/join ROOM" and waits for "OK join ROOM", skipping other
// frames (JOIN notices).
func (m *member) join(kind frame.Kind, room string) error {
	out, err := frame.Append(nil, kind, 0, []byte("/join "+room))
	if err != nil {
		return err
	}
	if _, err := m.c.Write(out); err != nil {
		return err
	}
	for {
		p, err := m.fr.Next()
		if err != nil {
			return err
		}
		f := parseServerFrame(p)
		switch {
		case f.verb == "OK" && f.a == "join" && f.b == room:
			return nil
		case f.verb == "ERR" || f.verb == "BYE":
			return serverError{f.verb, f.a}
		}
	}
}

// send posts messages at the sender's share of Rate until the deadline.
func (ch *chatRun) send(m *member, k int) {
	r := ch.r
	interval := time.Duration(float64(r.cfg.Senders) / r.cfg.Rate * float64(time.Second))
	start := r.sendStart
	p := r.pace(start.Add(interval*time.Duration(k)/time.Duration(r.cfg.Senders)), interval, m.i)
	defer p.stop()
	if tc, ok := m.c.Conn.(*net.TCPConn); ok && r.cfg.SendBuffer > 0 {
		if err := tc.SetWriteBuffer(r.cfg.SendBuffer); err != nil {
			r.fail(fmt.Errorf("sender %d: send buffer: %w", m.i, err), true)
			return
		}
	}
	var text, out []byte
	for {
		due, ok := p.next(r)
		if !ok {
			return
		}
		text = appendStamp(text[:0], due.Sub(r.start), time.Since(r.start), r.cfg.Size)
		out, _ = frame.Append(out[:0], r.cfg.Framing, 0, text)
		if _, err := m.c.Write(out); err != nil {
			if !r.ended(err) && m.dropped.CompareAndSwap(false, true) {
				r.fail(err, true)
			}
			return
		}
		m.sent.Add(1)
	}
}

// receive reads frames until the connection ends, recording each of the
// generator's messages.
func (ch *chatRun) receive(m *member) {
	r := ch.r
	b := r.rec.batch(m.i)
	defer b.flush()
	for {
		p, err := m.fr.Next()
		if err != nil {
			if !r.ended(err) && m.dropped.CompareAndSwap(false, true) {
				r.fail(err, true)
			}
			return
		}
		now := time.Since(r.start)
		f := parseServerFrame(p)
		switch f.verb {
		case "MSG":
			due, sent, ok := parseStamp(f.rest)
			if !ok {
				continue // someone else's message
			}
			m.received.Add(1)
			b.add(now, now-due, now-sent, len(p))
		case "ERR":
			ch.mu.Lock()
			ch.errs[f.a]++
			ch.mu.Unlock()
			if m.sender {
				m.rejected.Add(1)
			}
		case "BYE":
			if m.dropped.CompareAndSwap(false, true) {
				r.fail(serverError{f.verb, f.a}, true)
			}
			return
		}
	}
}

// drain waits, at most chatGrace, until every receiver has every message
// the server accepted from the others.
func (ch *chatRun) drain() {
	limit := time.Now().Add(chatGrace)
	for time.Now().Before(limit) && ch.r.ctx.Err() == nil {
		var got, want uint64
		accepted := ch.accepted()
		for _, m := range ch.members {
			if !m.dropped.Load() {
				got += m.received.Load()
				want += accepted - m.accepted()
			}
		}
		if got >= want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (m *member) accepted() uint64 {
	s, rej := m.sent.Load(), m.rejected.Load()
	return s - min(s, rej)
}

func (ch *chatRun) accepted() uint64 {
	var n uint64
	for _, m := range ch.members {
		n += m.accepted()
	}
	return n
}

// fill adds the chat numbers to res.
func (ch *chatRun) fill(res *Result, secs float64) {
	for _, m := range ch.members {
		res.Ingress += m.sent.Load()
		res.Delivered += m.received.Load()
	}
	if secs > 0 {
		res.IngressPerS = float64(res.Ingress) / secs
		res.DeliveredPerS = float64(res.Delivered) / secs
	}
	if len(ch.errs) > 0 {
		res.ServerErrors = ch.errs
	}
	accepted := ch.accepted()
	first := true
	for _, m := range ch.members {
		want := accepted - m.accepted()
		if m.dropped.Load() || want == 0 {
			continue
		}
		share := float64(m.received.Load()) / float64(want)
		if first || share < res.FairnessMin {
			res.FairnessMin = share
		}
		if first || share > res.FairnessMax {
			res.FairnessMax = share
		}
		first = false
	}
}

// serverFrame is a chat server frame split into its verb, two words and
// the rest: "MSG room nick text" has a=room, b=nick, rest=text.
type serverFrame struct {
	verb, a, b, rest string
}

// parseServerFrame splits a frame at its first three spaces.
func parseServerFrame(p []byte) serverFrame {
	var f serverFrame
	parts := bytes.SplitN(p, []byte(" "), 4)
	dst := []*string{&f.verb, &f.a, &f.b, &f.rest}
	for i, part := range parts {
		*dst[i] = string(part)
	}
	return f
}

// appendStamp appends a message text: the prefix, the due and sent times
// in nanoseconds, and padding up to size bytes.
func appendStamp(dst []byte, due, sent time.Duration, size int) []byte {
	start := len(dst)
	dst = append(dst, stampPrefix...)
	dst = strconv.AppendInt(dst, int64(due), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(sent), 10)
	dst = append(dst, ' ')
	for len(dst)-start < size {
		dst = append(dst, 'x')
	}
	return dst
}

// parseStamp reads the times appendStamp wrote.
func parseStamp(text string) (due, sent time.Duration, ok bool) {
	rest, found := strings.CutPrefix(text, stampPrefix)
	if !found {
		return 0, 0, false
	}
	var vals [2]int64
	for i := range vals {
		j := 0
		for j < len(rest) && rest[j] != ' ' {
			j++
		}
		v, err := strconv.ParseInt(rest[:j], 10, 64)
		if err != nil || v < 0 || j == len(rest) {
			return 0, 0, false
		}
		vals[i], rest = v, rest[j+1:]
	}
	return time.Duration(vals[0]), time.Duration(vals[1]), true
}

// clip shortens a frame for an error message.
func clip(p []byte) string {
	if len(p) > 64 {
		return string(p[:64]) + "..."
	}
	return string(p)
}
