package conformance

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcplab/tcplab/app/chat"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/testkit"
)

// The TLS cases beyond hardenTLS's: what a TLS connection promises however
// the model serves it. A model without TLS skips them (hardenTLS checks
// that it refuses to start).

// tlsCases are the TLS cases, for RunHardening.
func tlsCases() []hardeningCase {
	return []hardeningCase{
		{"TLS: every close ends with close_notify, after the farewell, encrypted", hardenTLSClose},
		{"TLS: a record longer than TLS allows is refused with record_overflow and closed", hardenTLSRecordOverflow},
		{"TLS: refusals come over TLS at a bounded rate", hardenTLSRefusalRate},
		{"TLS: chat fan-out, a slow consumer's farewell and shutdown's, over TLS", hardenTLSChat},
	}
}

// tlsServer starts h under m with TLS and cfg, or skips a model without
// TLS. It returns the server and a client config that trusts it.
func tlsServer(t *testing.T, m engine.Model, h handler.Handler, cfg engine.Config) (*Server, *tls.Config) {
	t.Helper()
	if !m.TLS {
		t.Skip("no TLS: the model must refuse to start with it (the TLS case)")
	}
	cert := NewTestCert(t)
	cfg.TLSCert, cfg.TLSKey = cert.CertFile, cert.KeyFile
	return Start(t, m.Name, h, cfg), cert.ClientConfig()
}

// recorder is a client's socket that keeps every byte it reads: the
// ciphertext under a TLS client.
type recorder struct {
	net.Conn
	mu  sync.Mutex
	got []byte
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	r.got = append(r.got, p[:n]...)
	r.mu.Unlock()
	return n, err
}

// lastRecordType returns the type of the last whole record in the
// ciphertext the recorder read.
func (r *recorder) lastRecordType() (typ byte, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.got
	for len(b) >= 5 {
		n := 5 + (int(b[3])<<8 | int(b[4]))
		if len(b) < n {
			break
		}
		typ, ok, b = b[0], true, b[n:]
	}
	return typ, ok
}

// dialTLS12 connects a TLS 1.2 client to s, recording what it reads: under
// TLS 1.2 an alert travels in a record of its own type (21), so a stream
// whose last record is one and whose reader sees io.EOF ended with
// close_notify.
func dialTLS12(t *testing.T, s *Server, conf *tls.Config) (*testkit.Client, *recorder) {
	t.Helper()
	conf = conf.Clone()
	conf.MaxVersion = tls.VersionTLS12
	rec := &recorder{Conn: s.Dial(t)}
	tc := tls.Client(rec, conf)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return testkit.NewClient(t, tc, frame.Line), rec
}

// expectCloseNotify checks that c's stream has ended, and with close_notify.
func expectCloseNotify(t *testing.T, c *testkit.Client, rec *recorder, what string) {
	t.Helper()
	c.End()
	if typ, ok := rec.lastRecordType(); !ok || typ != 21 {
		t.Fatalf("%s: the last record is of type %d (found %v), want an alert (21): close_notify", what, typ, ok)
	}
}

// tlsCloseLimit is the outbound bound of hardenTLSClose: a flood chunk
// over it overflows at once.
const tlsCloseLimit = 64 << 10

func hardenTLSClose(t *testing.T, m engine.Model) {
	s, conf := tlsServer(t, m, Probe(), probeCfg(engine.Config{MaxPending: tlsCloseLimit}))

	// The session closes with last bytes (CloseWith): they come over TLS,
	// then close_notify.
	c, rec := dialTLS12(t, s, conf)
	c.Call("ping", "pong")
	c.Send("end")
	c.Next("END")
	expectCloseNotify(t, c, rec, "the session's close")

	// The engine closes (an overflow): the session's farewell, then
	// close_notify.
	c, rec = dialTLS12(t, s, conf)
	c.Send(fmt.Sprintf("flood %d 1", tlsCloseLimit+1))
	c.Next("BYE " + handler.ErrOverflow.Error())
	expectCloseNotify(t, c, rec, "an overflow")

	// The client says close_notify: the server answers with its own.
	c, rec = dialTLS12(t, s, conf)
	c.Call("ping", "pong")
	if err := c.Conn().(*tls.Conn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	expectCloseNotify(t, c, rec, "the peer's close_notify")
}

func hardenTLSRecordOverflow(t *testing.T, m engine.Model) {
	s, conf := tlsServer(t, m, Probe(), probeCfg(engine.Config{}))
	raw := s.Dial(t)
	tc := tls.Client(raw, conf)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c := testkit.NewClient(t, tc, frame.Line)
	c.Call("ping", "pong")
	// The header of an application-data record of 65535 bytes, more than
	// TLS allows (16 KiB and 2 KiB of expansion), and a few of its bytes.
	if _, err := raw.Write([]byte{23, 3, 3, 0xff, 0xff, 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if f, err := c.Read(); err == nil || !strings.Contains(err.Error(), "record overflow") {
		t.Fatalf("after an oversized record header: (%q, %v), want the record_overflow alert", f, err)
	}
	if rest, err := io.ReadAll(raw); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("the connection did not end: %v after %d bytes", err, len(rest))
	}
	if took := time.Since(start); took > tlsTimeoutBound {
		t.Fatalf("an oversized record was refused after %v: the server waited for its body", took)
	}
}

// hardenTLSRefusalRate: an address over its per-address cap on a TLS
// listener gets its refusal over TLS, but the server runs such handshakes
// at a bounded rate (16 a second, bursts of 16): of 120 refused
// connections in a row, at most that many are told, and the rest are
// closed without the handshake's crypto. Every one counts as refused.
func hardenTLSRefusalRate(t *testing.T, m engine.Model) {
	if m.Sequential {
		t.Skip("serves one connection at a time: the next waits in the backlog, never over the cap")
	}
	const extra, burst, perSecond = 120, 16, 16
	// One worker: a prefork worker counts the connections it serves.
	s, conf := tlsServer(t, m, Probe(), probeCfg(engine.Config{MaxConnsPerIP: 1, LimitLoopback: true, Workers: 1}))
	dial := func() (*tls.Conn, error) {
		return tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", s.Addr().String(), conf)
	}
	held, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	testkit.NewClient(t, held, frame.Line).Call("ping", "pong")

	// One after another, so that the bound on handshakes at once never
	// comes into it: only the rate does.
	start := time.Now()
	told := 0
	for range extra {
		c, err := dial()
		if err != nil {
			continue // closed before or during the handshake
		}
		c.SetDeadline(time.Now().Add(ioTimeout))
		b, _ := io.ReadAll(c)
		c.Close()
		if strings.HasPrefix(string(b), "REFUSED") {
			told++
		}
	}
	elapsed := time.Since(start)
	if most := burst + int(elapsed.Seconds()*perSecond) + 1; told > most {
		t.Errorf("%d of %d refused clients were told over TLS in %v: want at most %d (the refusal handshakes' rate)", told, extra, elapsed, most)
	}
	if told == 0 {
		t.Error("no refused client was told why: the refusal over TLS is gone")
	}
	checkStats(t, s, "every refusal is counted", func(st engine.Stats) bool { return st.Refused >= extra })
}

// TLS chat sizes: members of one room, and the messages each says.
const (
	tlsMembers = 4
	tlsMsgs    = 20
)

// hardenTLSChat runs a chat over TLS, where writes to a connection come
// from other connections' sessions (other loops, workers or processes):
// every member gets every other member's messages in order; a member that
// stops reading is cut as a slow consumer with its farewell, over TLS;
// and shutdown's farewell reaches the rest.
func hardenTLSChat(t *testing.T, m engine.Model) {
	cfg := engine.Config{MaxPending: slowPending, Workers: chatWorkers}
	if m.Child != nil {
		cfg.Workers = chatProcWorkers
	}
	if !servesManyAtOnce(m, cfg) {
		t.Skipf("needs %d clients served at once; this model serves fewer", chatClients)
	}
	if !m.TLS {
		t.Skip("no TLS: the model must refuse to start with it (the TLS case)")
	}
	cert := NewTestCert(t)
	cfg.TLSCert, cfg.TLSKey = cert.CertFile, cert.KeyFile
	e := &chatEnv{model: m.Name, kind: frame.Length, cfg: cfg}
	e.s = e.start(t, chat.Options{MaxFrame: 4096})
	d := testkit.Dialer{TLS: cert.ClientConfig(), Skip: testkit.Presence}
	addr := e.s.Addr().String()

	members := make([]*testkit.Client, tlsMembers)
	for i := range members {
		members[i] = d.Join(t, addr, e.kind, fmt.Sprintf("m%d", i), "sec")
	}
	for _, c := range members {
		c.Sync()
	}
	var wg sync.WaitGroup
	errs := make(chan error, tlsMembers)
	for i, c := range members {
		wg.Go(func() {
			msgs := make([]string, tlsMsgs)
			for j := range msgs {
				msgs[j] = fmt.Sprintf("t%d", j)
			}
			if err := c.Send(msgs...); err != nil {
				errs <- err
				return
			}
			errs <- readEachInOrder(c, i)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		return
	}

	// A member that stops reading while another floods the room.
	sender := d.Join(t, addr, e.kind, "sender", "slow")
	stalled := testkit.Dialer{TLS: cert.ClientConfig(), Stall: true}.Join(t, addr, e.kind, "staller", "slow")
	sender.Next("JOIN slow staller")
	const total = 200 // 400 KB: far past the 64 KiB bound and the kernel buffers
	for i := range total {
		sender.MustSend(floodText(i))
	}
	sender.Sync()
	next := 0
	err := stalled.ReadUntil("ERR slow-consumer outbound buffer over its limit", func(f string) error {
		if i := floodIndex(f, "slow", "sender"); i != next {
			return fmt.Errorf("%q when message %d was due", testkit.Cut(f), next)
		}
		next++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stalled.End("BYE slow-consumer")

	e.s.Stop(t)
	for _, c := range append(members, sender) {
		c.End("BYE " + chat.ByeShuttingDown)
	}
}

// readEachInOrder reads, as member me of hardenTLSChat, every other
// member's tlsMsgs messages, each sender's in order.
func readEachInOrder(c *testkit.Client, me int) error {
	next := make([]int, tlsMembers)
	for got := 0; got < (tlsMembers-1)*tlsMsgs; got++ {
		f, err := c.Read()
		if err != nil {
			return fmt.Errorf("m%d after %d messages: %w", me, got, err)
		}
		var from, i int
		if _, err := fmt.Sscanf(f, "MSG sec m%d t%d", &from, &i); err != nil || from < 0 || from >= tlsMembers || from == me {
			return fmt.Errorf("m%d: unexpected %q", me, testkit.Cut(f))
		}
		if i != next[from] {
			return fmt.Errorf("m%d: message %d of m%d when %d was due", me, i, from, next[from])
		}
		next[from]++
	}
	return nil
}
