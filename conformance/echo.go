package conformance

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tcplab/tcplab/engine"
)

// EchoCases are the checks every model passes serving the echo app.
func EchoCases() []Case {
	return []Case{
		{"payload sizes echoed exactly", echoSizes, "echo"},
		{"64KiB sent one byte per write", echoByteAtATime, "echo"},
		{"200 concurrent clients", echoConcurrent, "echo"},
		{"half-closed client still gets its echo", echoHalfClose, "echo"},
		{"shutdown ends every connection without leaks", echoShutdown, "echo"},
	}
}

// RunEcho runs EchoCases against model, each on a fresh server.
func RunEcho(t *testing.T, model string) {
	runCases(t, model, engine.Config{}, EchoCases())
}

func payload(n int) []byte {
	p := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 1))
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

// roundTrip writes p from one goroutine while reading the echo on this
// one, as a client must when the payload exceeds the socket buffers, and
// checks every byte.
func roundTrip(c net.Conn, p []byte, write func(net.Conn, []byte) error) error {
	return roundTripPaced(c, p, write, len(p), 0)
}

// roundTripPaced is roundTrip reading chunk bytes at a time, with a pause
// after each chunk. Each read gives the connection a fresh ioTimeout, the
// write in flight too: what fails is a transfer that stops, not one that a
// busy machine makes slow.
func roundTripPaced(c net.Conn, p []byte, write func(net.Conn, []byte) error, chunk int, pause time.Duration) error {
	c.SetDeadline(time.Now().Add(ioTimeout))
	werr := make(chan error, 1)
	go func() { werr <- write(c, p) }()
	got := make([]byte, len(p))
	var rerr error
	for n, end := 0, 0; n < len(p) && rerr == nil; {
		if n == end {
			if n > 0 {
				time.Sleep(pause)
			}
			end = min(len(p), n+chunk)
		}
		var m int
		m, rerr = c.Read(got[n:end])
		n += m
		if m > 0 {
			c.SetDeadline(time.Now().Add(ioTimeout))
		}
	}
	if rerr == io.EOF {
		rerr = io.ErrUnexpectedEOF
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if rerr != nil {
		return fmt.Errorf("read echo of %d bytes: %w", len(p), rerr)
	}
	if !bytes.Equal(got, p) {
		i := 0
		for got[i] == p[i] {
			i++
		}
		return fmt.Errorf("echo of %d bytes differs from byte %d on", len(p), i)
	}
	return nil
}

func writeAll(c net.Conn, p []byte) error {
	_, err := c.Write(p)
	return err
}

func echoSizes(t *testing.T, s *Server) {
	c := s.Dial(t)
	for _, n := range []int{1, 2, 100, 1460, 4096, 65536, 100000, 1 << 20} {
		if err := roundTrip(c, payload(n), writeAll); err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
	}
}

func echoByteAtATime(t *testing.T, s *Server) {
	c := s.Dial(t)
	byteAtATime := func(c net.Conn, p []byte) error {
		for i := range p {
			if _, err := c.Write(p[i : i+1]); err != nil {
				return err
			}
		}
		return nil
	}
	if err := roundTrip(c, payload(64<<10), byteAtATime); err != nil {
		t.Fatal(err)
	}
}

// echoConcurrent runs 200 clients. Where the model serves connections
// concurrently, all 200 must be open and answered at the same time: each
// waits for every other's first echo before its second. A model that
// serves at most n < 200 connections at once (Server.Concurrency: a
// Sequential model, a worker pool) instead must answer all 200 n at a time,
// and must not answer one more client while n are connected.
//
// A client fails when the server has answered none of them for ioTimeout
// (watchdog), not when its own answer takes that long: fork starts one
// process per client, and 200 start-ups of a race-enabled test binary on
// a loaded 2-core machine can take longer than that, while each one is
// progress.
func echoConcurrent(t *testing.T, s *Server) {
	var w watchdog
	w.progress()
	const clients = 200
	var barrier *sync.WaitGroup
	if n := s.Concurrency(); n > 0 && n < clients {
		checkBounded(t, s, n)
	} else {
		barrier = new(sync.WaitGroup)
		barrier.Add(clients)
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			if err := oneClient(s, i, barrier, &w); err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// oneClient connects and round-trips one payload. With a barrier, it then
// waits until every client has done the same and round-trips a second.
func oneClient(s *Server, i int, barrier *sync.WaitGroup, w *watchdog) error {
	arrived := false
	arrive := func() {
		if barrier != nil && !arrived {
			arrived = true
			barrier.Done()
		}
	}
	defer arrive() // a client that fails early must not hold the others
	nc, err := net.DialTimeout("tcp", s.Addr().String(), ioTimeout)
	if err != nil {
		return err
	}
	defer nc.Close()
	c := watchedConn{nc, w}
	if err := roundTrip(c, payload(100+i), writeAll); err != nil {
		return err
	}
	if barrier == nil {
		return nil // the next client is served only once this one leaves
	}
	arrive()
	barrier.Wait() // every client is connected and has been answered
	return roundTrip(c, payload(1000+i), writeAll)
}

// watchdog records when a server last made progress for any of a case's
// clients.
type watchdog struct{ last atomic.Int64 }

func (w *watchdog) progress() { w.last.Store(time.Now().UnixNano()) }

// stalled reports whether no progress was made for ioTimeout.
func (w *watchdog) stalled() bool {
	return time.Since(time.Unix(0, w.last.Load())) > ioTimeout
}

// watchedConn is a client connection whose reads and writes wait as long
// as the server makes progress for some client of the watchdog, and fail
// once it has made none for ioTimeout. Each byte moved is progress.
type watchedConn struct {
	net.Conn
	w *watchdog
}

func (c watchedConn) Read(p []byte) (int, error) {
	return c.wait(c.Conn.SetReadDeadline, func() (int, error) { return c.Conn.Read(p) })
}

func (c watchedConn) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, err := c.wait(c.Conn.SetWriteDeadline, func() (int, error) { return c.Conn.Write(p[done:]) })
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// wait runs op with a short deadline, again after a timeout that moved no
// byte while the watchdog sees progress elsewhere.
func (c watchedConn) wait(deadline func(time.Time) error, op func() (int, error)) (int, error) {
	for {
		deadline(time.Now().Add(time.Second))
		n, err := op()
		if n > 0 {
			c.w.progress()
		}
		switch {
		case err == nil, n > 0 && isTimeout(err):
			return n, nil
		case !isTimeout(err) || c.w.stalled():
			return n, err
		}
	}
}

// checkBounded holds n clients open, each answered, and checks that one
// more is not answered until one of them leaves.
func checkBounded(t *testing.T, s *Server, n int) {
	held := make([]net.Conn, n)
	for i := range held {
		held[i] = s.Dial(t)
		if err := roundTrip(held[i], fmt.Appendf(nil, "held %d", i), writeAll); err != nil {
			t.Fatalf("client %d of the %d the model serves at once: %v", i, n, err)
		}
	}
	b := s.Dial(t)
	if _, err := b.Write([]byte("next")); err != nil {
		t.Fatal(err)
	}
	b.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if got, err := b.Read(make([]byte, 16)); got > 0 || !isTimeout(err) {
		t.Fatalf("a model that serves %d connection(s) at once answered another while %d were connected (n=%d, err=%v)", n, n, got, err)
	}
	held[0].Close()
	b.SetReadDeadline(time.Now().Add(ioTimeout))
	got := make([]byte, len("next"))
	if _, err := io.ReadFull(b, got); err != nil || string(got) != "next" {
		t.Fatalf("the waiting client after one left: %q, %v", got, err)
	}
	b.Close()
	for _, c := range held[1:] {
		c.Close()
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func echoHalfClose(t *testing.T, s *Server) {
	c := s.Dial(t)
	p := payload(200000)
	if err := roundTrip(c, p, func(c net.Conn, p []byte) error {
		if _, err := c.Write(p); err != nil {
			return err
		}
		return c.(*net.TCPConn).CloseWrite()
	}); err != nil {
		t.Fatal(err)
	}
	// After the echo, the server closes its side too.
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after the echo: read (%d, %v), want EOF", n, err)
	}
}

// echoShutdown connects clients, shuts the server down under them, and
// checks that each connection ends and no goroutine is left behind.
func echoShutdown(t *testing.T, s *Server) {
	clients := 20
	if n := s.Concurrency(); n > 0 {
		clients = min(clients, n) // the others would wait unanswered
	}
	conns := make([]net.Conn, clients)
	for i := range conns {
		conns[i] = s.Dial(t)
		if err := roundTrip(conns[i], payload(64), writeAll); err != nil {
			t.Fatal(err)
		}
	}
	s.Stop(t)
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(shutdownTimeout))
		n, err := c.Read(make([]byte, 1))
		if n != 0 || err == nil || isTimeout(err) {
			t.Errorf("client %d after shutdown: read (%d, %v), want the connection ended", i, n, err)
		}
	}
}

// checkLeaks makes the test fail if goroutines started after this call are
// still running once every later cleanup (server shutdown, client closes)
// has run.
func checkLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}
