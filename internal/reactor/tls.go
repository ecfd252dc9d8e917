package reactor

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/serving"
)

// This file is the loops' TLS layer: crypto/tls, driven as it is, between
// the driver and the dispatcher on the way in, and between the session and
// the outbound buffer on the way out. Neither the drivers nor the
// dispatchers know of it, and a server without TLS does not have it (the
// loop core's cost is a nil check of conn.tls on the paths that need one).
//
//   - Each connection gets a tls.Conn over a tlsWire: a net.Conn whose
//     Read hands crypto/tls the ciphertext the loop read, and whose Write
//     appends the records crypto/tls makes to the connection's bounded
//     outbound buffer. So --max-pending, backpressure and the write
//     timeout count ciphertext bytes.
//   - The handshake cannot be resumed, so it runs off the loop, on a
//     bounded pool of workers (workers.go), once the client's first record is
//     whole: a client that sends nothing, or trickles its hello, costs
//     no worker. The wire's Read blocks there until the loop has fed it
//     more. Its deadline (HandshakeTimeout) is a loop timer.
//   - After it, the loop feeds what it reads to tls.Conn.Read until the
//     wire says "no more for now": an error whose Temporary() is true,
//     which crypto/tls returns without failing the connection
//     (readRecordOrCCS). The plaintext goes to the dispatcher as plain
//     input would. No goroutine is left.
//   - Writes encrypt on the writer's goroutine (tls.Conn.Write, one at a
//     time); a write whose records would pass --max-pending fails with
//     handler.ErrOverflow before it is encrypted, so the stream stays
//     whole for the farewell.
//   - Closing seals the stream: the farewell, if any, is encrypted, then
//     close_notify, both as the last bytes queued (handler.Farewell's
//     place in outbuf.Closer).
//   - Records are followed as they arrive (serving.Records): a record
//     left incomplete starts the frame timeout, as the session's
//     unconsumed input does, so a trickled record times out. crypto/tls
//     refuses a record longer than TLS allows (record_overflow), so a
//     connection holds at most one record of ciphertext.
//   - Refusals go over TLS at a bounded rate (serving.TLSRefusals).

const (
	// handshakeWorkers is how many handshakes run at once. A handshake
	// holds its worker while it waits for the client's second flight.
	handshakeWorkers = 64
	// handshakeInputMax is how much ciphertext may wait for a handshake
	// in progress before the loop stops reading the connection.
	handshakeInputMax = 16 << 10
	// maxPlaintext is the most plaintext one record carries.
	maxPlaintext = 16 << 10
	// maxCiphertext is the longest record body TLS 1.2 allows (TLS 1.3
	// less); crypto/tls refuses longer ones.
	maxCiphertext = maxPlaintext + 2048
	// recordTypeHandshake is the type of a record carrying handshake
	// messages: a ClientHello's.
	recordTypeHandshake = 22
)

var (
	errHandshakeTimeout = errors.New("tls: handshake timed out")
	// errWouldBlock is the wire's "no more for now".
	errWouldBlock net.Error = wouldBlock{}
)

// wouldBlock is a temporary net.Error: crypto/tls returns it from Read
// without failing the connection.
type wouldBlock struct{}

func (wouldBlock) Error() string   { return "tls: no more input for now" }
func (wouldBlock) Timeout() bool   { return false }
func (wouldBlock) Temporary() bool { return true }

// tlsServer is a Server's TLS layer. It is the dispatcher the loops call,
// and calls the model's own (inner) for the connections whose handshake
// is done.
type tlsServer struct {
	s          *Server
	inner      dispatcher
	conf       *tls.Config
	handshakes *workers
	refusals   *serving.TLSRefusals
	cancel     context.CancelFunc // ends the refusals' handshakes
	// bufs holds plaintext buffers of the server's chunk: a loop takes one
	// while it decrypts.
	bufs sync.Pool
}

// newTLSServer makes s's TLS layer over the dispatcher inner, serving conf.
func newTLSServer(s *Server, inner dispatcher, conf *tls.Config) *tlsServer {
	conf = conf.Clone()
	// Whole records from the first: the write bound (tlsConn.write) counts
	// a record per 16 KiB.
	conf.DynamicRecordSizingDisabled = true
	ctx, cancel := context.WithCancel(context.Background())
	d := &tlsServer{
		s:          s,
		inner:      inner,
		conf:       conf,
		handshakes: newWorkers(handshakeWorkers),
		refusals:   serving.NewTLSRefusals(ctx, s.cfg),
		cancel:     cancel,
	}
	d.bufs.New = func() any {
		b := make([]byte, s.chunk)
		return &b
	}
	return d
}

// tlsConn is a connection's TLS state.
type tlsConn struct {
	c   *conn
	tc  *tls.Conn
	max int // the outbound bound, MaxPending

	// Owned by the loop.
	records   serving.Records // the boundaries of the records read so far
	recordAt  time.Duration   // once open: the loop clock when the incomplete record began, 0 if none
	deadline  time.Duration   // until open: the handshake's deadline
	submitted bool            // the handshake went to the pool
	opened    bool            // the handshake is done and the session opened
	failed    bool            // the handshake failed: counted, closing

	// ready is set, after overhead, once the handshake is done: writes
	// encrypt from then on.
	ready    atomic.Bool
	overhead int // bytes a record adds to its plaintext, at most

	mu   sync.Mutex
	cond sync.Cond // input came, or the handshake was cut off
	// in holds what the loop read during the handshake that crypto/tls
	// has not taken yet; src, after it, the bytes the loop is feeding.
	in, src  []byte
	blocking bool  // the handshake runs: Read waits for input
	err      error // Read fails with it once in is empty: the handshake was cut off
	stopped  bool  // the loop stopped reading for in being full: tell it when it is not
	// While capturing, the records crypto/tls writes go to capture (the
	// sealed farewell) rather than the outbound buffer; once sealed, none
	// go anywhere.
	capturing, sealed bool
	capture           []byte

	wmu        sync.Mutex // writes and the seal, one at a time
	overflowed bool       // a write failed for the bound
}

// attach gives c, just accepted, its TLS state.
func (d *tlsServer) attach(c *conn) {
	t := &tlsConn{c: c, max: d.s.cfg.MaxPending, blocking: true}
	t.cond.L = &t.mu
	t.tc = tls.Server((*tlsWire)(t), d.conf)
	c.tls = t
	c.out.KeepWhole()
}

// open starts c's handshake clock. The handshake itself waits for the
// client's first record (input).
func (d *tlsServer) open(c *conn) {
	l := c.l
	c.tls.deadline = l.now() + d.s.cfg.HandshakeTimeout
	l.addTimer(c, c.tls.deadline)
}

// input takes ciphertext the loop read: for the handshake, or to decrypt
// and pass on.
func (d *tlsServer) input(c *conn, p []byte) bool {
	t := c.tls
	completed := t.records.Scan(p)
	if !t.opened {
		return d.handshakeInput(c, t, completed, p)
	}
	hold := d.decrypt(c, t, p)
	d.clock(c, completed)
	return hold
}

// handshakeInput keeps p for the handshake, and starts the handshake once
// the client's first record is whole (or cannot be a hello). It reports
// whether reading must stop until the handshake has taken some.
func (d *tlsServer) handshakeInput(c *conn, t *tlsConn, completed bool, p []byte) (full bool) {
	t.mu.Lock()
	t.in = append(t.in, p...)
	full = len(t.in) >= handshakeInputMax
	t.stopped = full
	t.cond.Signal()
	t.mu.Unlock()
	if !t.submitted {
		typ, n, ok := t.records.Header()
		if completed || full || ok && (typ != recordTypeHandshake || n > maxCiphertext) {
			t.submitted = true
			d.handshakes.submit(func() { d.handshake(c) })
		}
	}
	return full
}

// handshake runs c's handshake on a worker and tells c's loop how it went.
func (d *tlsServer) handshake(c *conn) {
	err := c.tls.tc.Handshake()
	c.l.post(task{kind: taskCall, fn: func() { d.handshook(c, err) }})
}

// handshook is the loop's end of c's handshake: on success the session
// opens, and what the client sent after its last handshake message is
// decrypted and passed on.
func (d *tlsServer) handshook(c *conn, err error) {
	t, l := c.tls, c.l
	switch {
	case c.removed:
		return
	case err != nil:
		d.fail(c, err)
		return
	case c.closer.Closing() || l.quiet:
		return // closing, or shutdown began: the session never opens
	}
	t.mu.Lock()
	t.blocking = false
	t.mu.Unlock()
	t.overhead = recordOverhead(t.tc.ConnectionState().Version)
	t.opened = true
	t.ready.Store(true)
	c.out.Trim() // the handshake's flight is out: keep no batch its size
	d.s.stats.Accepted.Add(1)
	d.inner.open(c)
	if !c.removed && !c.finishing {
		if d.decrypt(c, t, nil) {
			c.held = true
		}
		d.clock(c, false)
	}
	l.recheck(c) // reading stopped while the handshake's input was full
}

// fail closes c, whose handshake failed or timed out, after anything
// crypto/tls wrote (an alert), and counts it.
func (d *tlsServer) fail(c *conn, err error) {
	t := c.tls
	if t.failed || c.removed {
		return
	}
	t.failed = true
	d.s.stats.HandshakeErrors.Add(1)
	d.s.cfg.Logger.Debug("TLS handshake failed", "remote", c.remote.String(), "err", err)
	t.cut(err)
	c.startClosing(err, false, time.Now().Add(d.s.cfg.DrainTimeout))
	c.l.finish(c)
}

// expired checks c's handshake deadline, at one of c's timers: past it,
// the handshake fails and expired reports true.
func (d *tlsServer) expired(c *conn, now time.Duration) bool {
	t := c.tls
	if t.opened || c.finishing {
		return false
	}
	if now < t.deadline {
		c.l.addTimer(c, t.deadline)
		return false
	}
	d.fail(c, errHandshakeTimeout)
	return true
}

// decrypt feeds p to crypto/tls and passes the plaintext on, a chunk at a
// time, until crypto/tls needs more input than there is. It reports
// whether the dispatcher asked for reading to stop. A record crypto/tls
// refuses (a bad one, an oversized one) ends c's input with its error,
// after the alert crypto/tls queued; close_notify ends it as a FIN would.
func (d *tlsServer) decrypt(c *conn, t *tlsConn, p []byte) (hold bool) {
	t.mu.Lock()
	t.src = p
	t.mu.Unlock()
	bp := d.bufs.Get().(*[]byte)
	buf, n := *bp, 0
	for {
		m, err := t.tc.Read(buf[n:])
		n += m
		if n > 0 && (n == len(buf) || err != nil) {
			if c.offloading {
				c.l.keep(c, buf[:n]) // Data waits for a function the session offloaded
			} else {
				hold = d.inner.input(c, buf[:n]) || hold
			}
			n = 0
		}
		if err != nil {
			if !errors.Is(err, errWouldBlock) {
				if errors.Is(err, io.EOF) {
					err = nil // close_notify: the peer finished
				}
				c.l.inputEnded(c, err)
			}
			break
		}
		if c.finishing || c.removed || c.closer.Sealed() {
			break // closing: what is left is dropped
		}
	}
	d.bufs.Put(bp)
	t.mu.Lock()
	t.src = nil
	t.mu.Unlock()
	return hold
}

// clock runs the frame timeout for a record left incomplete, from when it
// began: completed says a record ended in the bytes just read, so the
// incomplete one began in them. The timer is armed again with every read
// that leaves one (a no-op while it is armed): it is not re-armed while
// an offloaded function runs.
func (d *tlsServer) clock(c *conn, completed bool) {
	t, l := c.tls, c.l
	if !t.records.Partial() {
		t.recordAt = 0
		return
	}
	if completed || t.recordAt == 0 {
		t.recordAt = max(1, l.now())
	}
	if timeout := d.s.cfg.FrameTimeout; timeout > 0 && !c.finishing && !c.removed {
		l.addTimer(c, t.recordAt+timeout)
	}
}

// frameStart returns when c's frame clock started: the earlier of p, when
// the session's unconsumed input began (0 if none), and when an
// incomplete record began. Loop clock, in ns.
func (t *tlsConn) frameStart(p int64) int64 {
	if r := int64(t.recordAt); r != 0 && (p == 0 || r < p) {
		return r
	}
	return p
}

// ended passes on the end of c's input, or fails its handshake. A stream
// that ends inside a record was cut short.
func (d *tlsServer) ended(c *conn, reason error) {
	t := c.tls
	if !t.opened {
		d.fail(c, cmp.Or(reason, io.EOF))
		return
	}
	if reason == nil && t.records.Partial() {
		reason = io.ErrUnexpectedEOF
	}
	d.inner.ended(c, reason)
}

// closed passes on that c's socket is closed, or cuts its handshake off.
func (d *tlsServer) closed(c *conn) {
	if c.tls.opened {
		d.inner.closed(c)
		return
	}
	c.tls.cut(net.ErrClosed)
}

func (d *tlsServer) resumed(c *conn) {
	if c.tls.opened {
		d.inner.resumed(c)
	}
}

func (d *tlsServer) unpaused(c *conn) {
	if c.tls.opened {
		d.inner.unpaused(c)
	}
}

func (d *tlsServer) holding(c *conn) bool {
	t := c.tls
	if t.opened {
		return d.inner.holding(c)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.in) >= handshakeInputMax
}

// offloaded passes on that a function c's session offloaded returned.
func (d *tlsServer) offloaded(c *conn, late bool) { d.inner.offloaded(c, late) }

func (d *tlsServer) start() { d.inner.start() }

// quiesce also ends the refusals' handshakes.
func (d *tlsServer) quiesce() {
	d.inner.quiesce()
	d.cancel()
}

// stop also waits for the handshake workers and the refusals: every
// connection is closed by now, so no handshake waits for input, and what
// is left is at most a handshake's crypto (HandshakeTimeout bounds it).
func (d *tlsServer) stop() {
	d.inner.stop()
	d.handshakes.wait(context.Background(), time.Now().Add(d.s.cfg.HandshakeTimeout))
	d.handshakes.stop()
	d.refusals.Wait()
}

var _ dispatcher = (*tlsServer)(nil)

// refuse turns away fd, just accepted, for reason: with msg over TLS if
// the refusals' bounds allow (on a goroutine of its own, on a duplicate of
// the socket in Go's poller), otherwise by closing it. Out of descriptors
// there is no duplicate, and the connection is just closed.
func (d *tlsServer) refuse(fd int, msg []byte, reason error) {
	open := func() (net.Conn, error) {
		f := os.NewFile(uintptr(fd), "refused connection")
		defer f.Close()
		return net.FileConn(f)
	}
	if !d.refusals.Refuse(msg, reason, open) {
		discardInput(fd)
		unix.Close(fd)
	}
}

// cut makes the handshake's reads fail with err, and wakes one that
// waits.
func (t *tlsConn) cut(err error) {
	t.mu.Lock()
	if t.err == nil {
		t.err = err
	}
	t.cond.Broadcast()
	t.mu.Unlock()
}

// write encrypts p into the outbound buffer: the plaintext path of
// conn.Write. It fails with handler.ErrOverflow, encrypting nothing, if
// the records would pass the bound, and with handler.ErrClosed once the
// stream is sealed.
func (t *tlsConn) write(p []byte) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if t.sealed || !t.ready.Load() {
		return handler.ErrClosed
	}
	records := (len(p) + maxPlaintext - 1) / maxPlaintext
	if t.c.out.Len()+len(p)+records*t.overhead > t.max {
		return handler.ErrOverflow
	}
	_, err := t.tc.Write(p)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, handler.ErrOverflow) && !t.overflowed:
		// An alert crypto/tls wrote from the loop meanwhile took the
		// room: crypto/tls fails every write from now on.
		t.overflowed = true
		return err
	}
	return handler.ErrClosed
}

// seal encrypts plain, the farewell, and close_notify, and returns their
// records for the outbound buffer to queue last; nothing is encrypted
// after them. Before the handshake is done it returns nothing and cuts
// the handshake off.
func (t *tlsConn) seal(plain []byte) []byte {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.mu.Lock()
	if !t.ready.Load() {
		t.sealed = true
		t.mu.Unlock()
		t.cut(net.ErrClosed)
		return nil
	}
	t.capturing = true
	t.mu.Unlock()
	if len(plain) > 0 {
		t.tc.Write(plain)
	}
	t.tc.CloseWrite() // close_notify
	t.mu.Lock()
	out := t.capture
	t.capture, t.capturing, t.sealed = nil, false, true
	t.mu.Unlock()
	return out
}

// tlsFarewell is a connection's farewell under TLS: the session's (or
// the bytes given to CloseWith), encrypted, then close_notify.
type tlsFarewell struct {
	t     *tlsConn
	inner handler.Farewell // nil: none
}

func (f tlsFarewell) Farewell(reason error) []byte {
	var plain []byte
	if f.inner != nil {
		plain = f.inner.Farewell(reason)
	}
	return f.t.seal(plain)
}

// recordOverhead is the most bytes a record adds to its plaintext under
// TLS version v: header, then an AEAD's tag and TLS 1.3's content type,
// or for TLS 1.2 at most an explicit IV, a MAC and padding (CBC).
func recordOverhead(v uint16) int {
	if v == tls.VersionTLS13 {
		return serving.RecordHeaderLen + 1 + 16
	}
	return serving.RecordHeaderLen + 16 + 32 + 16
}

// tlsWire is the net.Conn crypto/tls reads and writes for a tlsConn: the
// loop's input and the connection's outbound buffer. It never blocks but
// in a handshake's Read.
type tlsWire tlsConn

// Read hands over the input the loop read: during the handshake, waiting
// for it; after, the error errWouldBlock when there is none.
func (w *tlsWire) Read(p []byte) (int, error) {
	t := (*tlsConn)(w)
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		switch {
		case t.err != nil:
			return 0, t.err
		case len(t.in) > 0:
			n := copy(p, t.in)
			if t.in = t.in[n:]; len(t.in) == 0 {
				t.in = nil
			}
			if t.stopped && len(t.in) < handshakeInputMax {
				t.stopped = false
				t.c.l.post(task{kind: taskInput, c: t.c}) // the loop may read again
			}
			return n, nil
		case len(t.src) > 0:
			n := copy(p, t.src)
			t.src = t.src[n:]
			return n, nil
		case !t.blocking:
			return 0, errWouldBlock
		}
		t.cond.Wait()
	}
}

// Write queues the records crypto/tls made: in the outbound buffer, or
// while sealing in the farewell; after the seal (close_notify) nothing.
func (w *tlsWire) Write(p []byte) (int, error) {
	t := (*tlsConn)(w)
	t.mu.Lock()
	if t.capturing {
		t.capture = append(t.capture, p...)
		t.mu.Unlock()
		return len(p), nil
	}
	sealed := t.sealed
	t.mu.Unlock()
	if sealed {
		return len(p), nil
	}
	if err := t.c.out.Write(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close cuts a handshake off; the loop owns the socket.
func (w *tlsWire) Close() error {
	(*tlsConn)(w).cut(net.ErrClosed)
	return nil
}

func (w *tlsWire) LocalAddr() net.Addr  { return w.c.LocalAddr() }
func (w *tlsWire) RemoteAddr() net.Addr { return w.c.RemoteAddr() }

// The deadlines are the loop's timers': crypto/tls's own are no-ops.
func (w *tlsWire) SetDeadline(time.Time) error      { return nil }
func (w *tlsWire) SetReadDeadline(time.Time) error  { return nil }
func (w *tlsWire) SetWriteDeadline(time.Time) error { return nil }
