package conformance

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcplab/tcplab/app/chat"
	"github.com/tcplab/tcplab/app/echo"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/testkit"
)

// The hardening cases check what protects a server exposed to clients
// that misbehave: the frame timeout (slowloris), the per-address limits,
// and TLS (or a clear refusal to start without it). Each case starts its
// own servers, as their settings differ.

// hardeningCase is one check; it starts what it needs.
type hardeningCase struct {
	name string
	run  func(t *testing.T, model engine.Model)
}

// RunHardening runs the hardening cases against model.
func RunHardening(t *testing.T, model string) {
	m, err := engine.Lookup(model)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range append([]hardeningCase{
		{"an unfinished frame is closed with a farewell at the frame timeout; slow whole frames are not", hardenFrameTimeout},
		{"500 trickling connections get BYE frame-timeout while 50 clients finish every exchange", hardenSlowloris},
		{"over --max-conns-per-ip a connection is refused and closed; loopback is exempt by default", hardenPerIPCap},
		{"over --conn-rate a connection is refused and closed", hardenConnRate},
		{"TLS: served with a handshake deadline and TLS 1.2 at least, or refused at start", hardenTLS},
		{"a peer that takes no bytes for --write-timeout is closed; one that reads slowly but steadily is not", hardenWriteTimeout},
	}, tlsCases()...) {
		t.Run(c.name, func(t *testing.T) {
			checkLeaks(t)
			c.run(t, m)
		})
	}
}

// probeCfg returns cfg set up to serve the probe in any model.
func probeCfg(cfg engine.Config) engine.Config {
	cfg.App = "probe"
	return cfg
}

// dialLines connects a line client to the probe.
func dialLines(t *testing.T, s *Server) *testkit.Client {
	t.Helper()
	return testkit.NewClient(t, s.Dial(t), frame.Line)
}

// checkStats waits for the server's counters to satisfy ok. A model that
// serves in child processes counts there, and they report to the parent a
// little later (engine.ChildStatsFD).
func checkStats(t *testing.T, s *Server, what string, ok func(engine.Stats) bool) {
	t.Helper()
	testkit.Eventually(t, ioTimeout, what, func() error {
		if st := s.Stats(); !ok(st) {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
}

const frameTimeout = 300 * time.Millisecond

// tlsTimeoutBound is how long the TLS cases give a configured timeout
// (500 ms, 300 ms) to act: far under the defaults (5 s, 10 s) a server
// ignoring the configuration would use, with room for a busy machine.
const tlsTimeoutBound = 4 * time.Second

func hardenFrameTimeout(t *testing.T, m engine.Model) {
	s := Start(t, m.Name, Probe(), probeCfg(engine.Config{FrameTimeout: frameTimeout}))

	// Whole frames sent slowly, each in two halves, for longer than the
	// timeout in all: the connection stays. So does an idle one.
	slow := dialLines(t, s)
	for range 12 {
		slow.Write([]byte("pi"))
		time.Sleep(frameTimeout / 10)
		slow.Write([]byte("ng\n"))
		slow.Next("pong") // a frame sent in two halves
	}
	time.Sleep(2 * frameTimeout)
	slow.Call("ping", "pong")
	slow.Close()

	// A frame trickled a byte at a time never finishes: the connection is
	// closed with the farewell, however steadily the bytes come.
	trickle := dialLines(t, s)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			if err := trickle.Write([]byte{'x'}); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(frameTimeout / 10):
			}
		}
	}()
	trickle.End("BYE " + handler.ErrFrameTimeout.Error())
	checkStats(t, s, "one frame timeout", func(st engine.Stats) bool { return st.FrameTimeouts == 1 })
}

// Write-timeout sizes: the flood is far more than the kernel buffers of one
// loopback connection hold (at most a few MiB), and under the outbound
// bound, so only the timeout can end a connection that does not read.
const (
	writeTimeout = 300 * time.Millisecond
	floodChunk   = 64 << 10
	floodChunks  = 256 // 16 MiB
	floodPending = 2 * floodChunk * floodChunks
)

func hardenWriteTimeout(t *testing.T, m engine.Model) {
	s := Start(t, m.Name, Probe(), probeCfg(engine.Config{WriteTimeout: writeTimeout, MaxPending: floodPending}))
	flood := fmt.Sprintf("flood %d %d\n", floodChunk, floodChunks)

	// A peer that stops reading: the server's writes stall, and once no
	// byte has gone for the timeout the connection is closed. The peer
	// reads the first chunk, then nothing until the server has counted the
	// write timeout; reading after that finds less than the flood, then
	// the end. (A pause of a fixed length would not do: on a loaded
	// machine the server may not fill the socket buffers within it.)
	stalled := s.Dial(t)
	if _, err := io.WriteString(stalled, flood); err != nil {
		t.Fatal(err)
	}
	first, err := io.ReadFull(stalled, make([]byte, floodChunk))
	if err != nil {
		t.Fatalf("stalled reader: the flood did not start: %v", err)
	}
	checkStats(t, s, "a peer that reads nothing is closed after the write timeout", func(st engine.Stats) bool { return st.WriteTimeouts == 1 })
	rest, err := io.Copy(io.Discard, stalled)
	got := int64(first) + rest
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("stalled reader: the connection did not end: %v after %d bytes", err, got)
	}
	if got >= floodChunk*floodChunks {
		t.Fatalf("stalled reader got the whole flood (%d bytes): the write timeout never fired", got)
	}
	stalled.Close()

	// A peer that reads in bursts, with pauses shorter than the timeout:
	// each write makes progress, so it gets every byte and stays connected,
	// however long the whole transfer takes. Its server's timeout is ten
	// times the pauses' length over the stalled reader's: a test goroutine
	// on a loaded machine can be held up past 300 ms between two reads
	// (seen once, on uring, at a load average of 20), which is the peer
	// stalling, not the server failing.
	s = Start(t, m.Name, Probe(), probeCfg(engine.Config{WriteTimeout: 10 * writeTimeout, MaxPending: floodPending}))
	steady := s.Dial(t)
	if _, err := io.WriteString(steady, flood); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for left := floodChunk * floodChunks; left > 0; left -= len(buf) {
		time.Sleep(writeTimeout / 6)
		if _, err := io.ReadFull(steady, buf[:min(left, len(buf))]); err != nil {
			t.Fatalf("steady reader: %v with %d bytes to go", err, left)
		}
	}
	testkit.NewClient(t, steady, frame.Line).Call("ping", "pong") // after exactly the flood
}

// Slowloris sizes: trickling connections, and clients that must get
// through meanwhile, each sending slowMsgs messages.
const (
	tricklers = 500
	normals   = 50
	slowMsgs  = 20
)

func hardenSlowloris(t *testing.T, m engine.Model) {
	if m.Sequential {
		t.Skip("serves one connection at a time by design")
	}
	if m.Child != nil {
		t.Skip("a process per connection or worker: the frame timeout in child processes is checked with the probe case")
	}
	cfg := engine.Config{FrameTimeout: 2 * time.Second}
	if m.Concurrency != nil {
		cfg.Workers = tricklers + normals + 10 // a pool that serves everyone at once
	}
	h, err := chat.New(chat.Options{MsgRate: 0, MsgBurst: 0}) // no rate limit: full speed
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	s := Start(t, m.Name, h, cfg)

	// The normal clients join a room of their own first.
	cs := make([]*testkit.Client, normals)
	for i := range cs {
		c, err := testkit.Dialer{}.Hello(t, s.Addr().String(), frame.Length)
		if err != nil {
			t.Fatal(err)
		}
		c.Skip = testkit.Presence
		c.Call(fmt.Sprintf("/nick n%d", i), fmt.Sprintf("OK nick n%d", i))
		c.Call("/join work", "OK join work")
		cs[i] = c
	}

	// The tricklers connect and read HELLO; then, all at once, each sends
	// a length header for 64 bytes and the body a byte every 100 ms,
	// reading all the while. Its last frame must be BYE frame-timeout.
	var twg sync.WaitGroup
	begin := make(chan struct{})
	started := make(chan struct{}, tricklers)
	terrs := make(chan error, tricklers)
	stop := make(chan struct{})
	defer func() {
		close(stop)
		twg.Wait()
	}()
	for i := range tricklers {
		c, err := testkit.Dialer{}.Hello(t, s.Addr().String(), frame.Length)
		if err != nil {
			t.Fatalf("trickler %d: %v", i, err)
		}
		twg.Go(func() {
			twg.Go(func() {
				<-begin
				if _, err := c.Conn().Write(binary.BigEndian.AppendUint32(nil, 64)); err != nil {
					return
				}
				started <- struct{}{}
				for {
					select {
					case <-stop:
						return
					case <-time.After(100 * time.Millisecond):
					}
					if _, err := c.Conn().Write([]byte{'x'}); err != nil {
						return
					}
				}
			})
			last := ""
			for {
				f, err := c.Read()
				if err != nil {
					// The trickler writes on after the server has closed, so
					// the end may be a reset rather than a FIN.
					if (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) && last == "BYE "+chat.ByeFrameTimeout {
						terrs <- nil
					} else {
						terrs <- fmt.Errorf("trickler %d: last frame %q, then %v", i, last, err)
					}
					return
				}
				last = f
			}
		})
	}
	close(begin)
	for range tricklers {
		select {
		case <-started:
		case <-time.After(ioTimeout):
			t.Fatal("the tricklers did not all start")
		}
	}

	// Meanwhile each normal client says slowMsgs messages with a /ping
	// after each, and must get every message of every other, in order,
	// and every PONG, and never be closed.
	var nwg sync.WaitGroup
	nerrs := make(chan error, normals)
	for i, c := range cs {
		nwg.Go(func() { nerrs <- normalClient(c, i) })
	}
	nwg.Wait()
	close(nerrs)
	for err := range nerrs {
		if err != nil {
			t.Error(err)
		}
	}
	for range tricklers {
		if err := <-terrs; err != nil {
			t.Error(err)
		}
	}
	checkStats(t, s, "every trickler timed out, no one else", func(st engine.Stats) bool {
		return st.FrameTimeouts == tricklers
	})
}

// normalClient runs one well-behaved client of hardenSlowloris: it says
// slowMsgs messages, syncing with /ping after each, and then reads until
// it has every other client's messages.
func normalClient(c *testkit.Client, me int) error {
	next := make([]int, normals) // next message due from each client
	pongs := 0
	handle := func(f string) error {
		switch {
		case f == "PONG":
			pongs++
		case strings.HasPrefix(f, "MSG work "):
			var from, i int
			if _, err := fmt.Sscanf(f, "MSG work n%d m%d", &from, &i); err != nil || from < 0 || from >= normals || from == me {
				return fmt.Errorf("n%d: unexpected %q", me, f)
			}
			if i != next[from] {
				return fmt.Errorf("n%d: message %d from n%d arrived when %d was due", me, i, from, next[from])
			}
			next[from]++
		case strings.HasPrefix(f, "JOIN ") || strings.HasPrefix(f, "LEAVE "):
		default:
			return fmt.Errorf("n%d: unexpected %q", me, testkit.Cut(f))
		}
		return nil
	}
	for i := range slowMsgs {
		if err := c.Send(fmt.Sprintf("m%d", i), "/ping"); err != nil {
			return fmt.Errorf("n%d: %w", me, err)
		}
		for want := i + 1; pongs < want; {
			f, err := c.Read()
			if err != nil {
				return fmt.Errorf("n%d waiting for PONG %d: %w", me, want, err)
			}
			if err := handle(f); err != nil {
				return err
			}
		}
	}
	for from := range normals {
		for from != me && next[from] < slowMsgs {
			f, err := c.Read()
			if err != nil {
				return fmt.Errorf("n%d: %d of n%d's messages, then %w", me, next[from], from, err)
			}
			if err := handle(f); err != nil {
				return err
			}
		}
	}
	return nil
}

func hardenPerIPCap(t *testing.T, m engine.Model) {
	if m.Sequential {
		t.Skip("serves one connection at a time: the next waits in the backlog, never over the cap")
	}
	// One worker: a prefork worker counts the connections it serves.
	s := Start(t, m.Name, Probe(), probeCfg(engine.Config{MaxConnsPerIP: 1, LimitLoopback: true, ConnRate: -1, Workers: 1}))
	a := dialLines(t, s)
	a.Call("ping", "pong")
	b := dialLines(t, s)
	b.End("REFUSED " + handler.ErrTooManyConns.Error())
	checkStats(t, s, "one refusal for the per-address cap", func(st engine.Stats) bool {
		return st.Refused == 1 && st.RefusedBy["per-ip-limit"] == 1 && st.Open == 1
	})
	a.Call("ping", "pong")
	a.Close()
	testkit.Eventually(t, ioTimeout, "a new client is served after the first left", func() error {
		c := dialLines(t, s)
		defer c.Close()
		c.Send("ping")
		if f, err := c.Read(); f != "pong" {
			return fmt.Errorf("a new client got %q (%v)", f, err)
		}
		return nil
	})

	// Loopback clients are exempt by default.
	s = Start(t, m.Name, Probe(), probeCfg(engine.Config{MaxConnsPerIP: 1, Workers: 2}))
	for _, c := range []*testkit.Client{dialLines(t, s), dialLines(t, s)} {
		c.Call("ping", "pong")
	}
}

func hardenConnRate(t *testing.T, m engine.Model) {
	s := Start(t, m.Name, Probe(), probeCfg(engine.Config{ConnRate: 0.001, ConnBurst: 2, LimitLoopback: true, Workers: 1}))
	for range 2 {
		c := dialLines(t, s)
		c.Call("ping", "pong")
		c.Close()
	}
	dialLines(t, s).End("REFUSED " + handler.ErrConnRate.Error())
	checkStats(t, s, "one refusal for the connection rate", func(st engine.Stats) bool {
		return st.RefusedBy["per-ip-rate"] == 1
	})
}

func hardenTLS(t *testing.T, m engine.Model) {
	cert := NewTestCert(t)
	cfg := probeCfg(engine.Config{TLSCert: cert.CertFile, TLSKey: cert.KeyFile, HandshakeTimeout: 500 * time.Millisecond,
		FrameTimeout: frameTimeout})
	if !m.TLS {
		srv, err := engine.Listen(m.Name, Probe(), engine.Config{Addr: "127.0.0.1:0", TLSCert: cert.CertFile, TLSKey: cert.KeyFile})
		if err == nil {
			srv.Shutdown(t.Context())
			t.Fatal("a model without TLS started on a TLS config")
		}
		if !errors.Is(err, engine.ErrNoTLS) || !strings.Contains(err.Error(), m.Name) {
			t.Fatalf("error %q: want one naming the model and wrapping %v", err, engine.ErrNoTLS)
		}
		return
	}
	s := Start(t, m.Name, Probe(), cfg)
	dialTLS := func(s *Server, conf *tls.Config) (*testkit.Client, error) {
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: ioTimeout}, Config: conf}
		c, err := d.DialContext(t.Context(), "tcp", s.Addr().String())
		if err != nil {
			return nil, err
		}
		return testkit.NewClient(t, c, frame.Line), nil
	}

	// A client that never starts the handshake is cut off at the deadline:
	// the configured 500 ms, well before the 5 s default would be (the
	// bound is a failure limit with room for a busy machine).
	silentStart := time.Now()
	silent := s.Dial(t)
	if got, _ := io.ReadAll(silent); len(got) != 0 {
		t.Fatalf("a silent client got %q before the handshake", got)
	}
	if took := time.Since(silentStart); took > tlsTimeoutBound {
		t.Fatalf("a silent client was cut off after %v: want the 500 ms handshake timeout, not the default", took)
	}
	checkStats(t, s, "a handshake timed out", func(st engine.Stats) bool { return st.HandshakeErrors == 1 })

	// Plaintext gets no plaintext answer.
	plain := s.Dial(t)
	io.WriteString(plain, "ping\n")
	if got, _ := io.ReadAll(plain); bytes.Contains(got, []byte("pong")) {
		t.Fatalf("a plaintext client was answered in plaintext: %q", got)
	}

	// TLS 1.1 is refused.
	old := cert.ClientConfig()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if c, err := dialTLS(s, old); err == nil {
		c.Send("ping")
		if f, _ := c.Read(); f == "pong" {
			t.Fatal("a TLS 1.1 client was served")
		}
	}

	// A client that trusts the test CA is served.
	a, err := dialTLS(s, cert.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	a.Call("ping", "pong")
	if st := a.Conn().(*tls.Conn).ConnectionState(); st.Version < tls.VersionTLS12 {
		t.Fatalf("negotiated TLS version %x", st.Version)
	}
	a.Close()

	// A TLS record trickled a byte at a time is a frame that never
	// finishes too, though the server's TLS layer shows no byte of it.
	raw := s.Dial(t)
	tc := tls.Client(raw, cert.ClientConfig())
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		if _, err := raw.Write([]byte{23, 3, 3, 0, 64}); err != nil { // application data, 64 bytes
			return
		}
		for {
			select {
			case <-stop:
				return
			case <-time.After(frameTimeout / 10):
			}
			if _, err := raw.Write([]byte{'x'}); err != nil {
				return
			}
		}
	}()
	trickleStart := time.Now()
	testkit.NewClient(t, tc, frame.Line).End("BYE " + handler.ErrFrameTimeout.Error())
	if took := time.Since(trickleStart); took > tlsTimeoutBound {
		t.Fatalf("a trickled record was cut off after %v: want the %v frame timeout, not the default", took, frameTimeout)
	}

	// Over the per-address cap, the refusal comes over TLS too. (One
	// worker: a prefork worker counts the connections it serves.)
	if !m.Sequential {
		capped := cfg
		capped.MaxConnsPerIP, capped.LimitLoopback, capped.Workers = 1, true, 1
		s := Start(t, m.Name, Probe(), capped)
		a, err := dialTLS(s, cert.ClientConfig())
		if err != nil {
			t.Fatal(err)
		}
		a.Call("ping", "pong")
		b, err := dialTLS(s, cert.ClientConfig())
		if err != nil {
			t.Fatal(err)
		}
		b.End("REFUSED " + handler.ErrTooManyConns.Error())
	}

	// Echo over TLS, a payload larger than any buffer on the way.
	e := Start(t, m.Name, echo.New(), engine.Config{App: "echo", TLSCert: cert.CertFile, TLSKey: cert.KeyFile})
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", e.Addr().String(), cert.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	if err := roundTrip(c, payload(1<<20), writeAll); err != nil {
		t.Fatal(err)
	}
}
