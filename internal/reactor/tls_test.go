package reactor

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/serving"
	"github.com/tcplab/tcplab/internal/testkit/testcert"
	"github.com/tcplab/tcplab/internal/testkit/wait"
)

// withTLS returns o serving TLS with a test certificate, and a client
// config that trusts it.
func withTLS(t *testing.T, o options) (options, *tls.Config) {
	t.Helper()
	cert := testcert.New(t)
	o.TLSCert, o.TLSKey = cert.CertFile, cert.KeyFile
	if err := serving.LoadTLS(&o.Config); err != nil {
		t.Fatal(err)
	}
	return o, cert.ClientConfig()
}

// dialTLS connects a TLS client to s and finishes its handshake.
func dialTLS(t *testing.T, s *Server, conf *tls.Config) *tls.Conn {
	t.Helper()
	tc := tls.Client(dial(t, s), conf)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return tc
}

// pingPong checks one round trip of the lines handler on c.
func pingPong(t *testing.T, c io.ReadWriter) {
	t.Helper()
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if line != "pong\n" || err != nil {
		t.Fatalf("ping: (%q, %v), want pong", line, err)
	}
}

// bytewise answers a line "N" with N writes of one byte 'x' and then a
// newline, and says "BYE <reason>" when the engine closes it.
type bytewise struct{}

func (bytewise) Open(c handler.Conn) handler.Session { return bytewiseSession{c} }

type bytewiseSession struct{ c handler.Conn }

func (s bytewiseSession) Data(in []byte) (int, error) {
	used := 0
	for {
		i := strings.IndexByte(string(in[used:]), '\n')
		if i < 0 {
			return used, nil
		}
		n, err := strconv.Atoi(string(in[used : used+i]))
		if err != nil {
			return used, err
		}
		used += i + 1
		for range n {
			if s.c.Write([]byte{'x'}) != nil {
				return used, nil
			}
		}
		s.c.Write([]byte{'\n'})
	}
}

func (bytewiseSession) Farewell(reason error) []byte { return []byte("BYE " + reason.Error() + "\n") }
func (bytewiseSession) Closed(error)                 {}

// TestTLSMaxPendingCountsCiphertext: under TLS the outbound bound counts
// the records queued, not their plaintext. A byte written alone takes a
// 23-byte record under TLS 1.3, so 100 such writes (2.3 KB) fit a 4 KiB
// bound and 1000 (1000 bytes of plaintext) do not: the connection is
// closed for the overflow, with its farewell after everything queued
// before it, encrypted, and readable. The writes run in Data on the loop,
// so nothing is flushed while they queue.
func TestTLSMaxPendingCountsCiphertext(t *testing.T) {
	kernels(t, func(t *testing.T, o options) {
		o.MaxPending = 4 << 10
		o, conf := withTLS(t, o)
		s := start(t, bytewise{}, o)
		c := dialTLS(t, s, conf)
		r := bufio.NewReader(c)
		io.WriteString(c, "100\n")
		if line, err := r.ReadString('\n'); line != strings.Repeat("x", 100)+"\n" || err != nil {
			t.Fatalf("100 bytes, a record each: (%q, %v)", line, err)
		}
		io.WriteString(c, "1000\n")
		rest, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("after 1000 one-byte writes: %v", err)
		}
		xs, ok := strings.CutSuffix(string(rest), "BYE "+handler.ErrOverflow.Error()+"\n")
		if !ok || strings.Trim(xs, "x") != "" || len(xs) >= 1000 {
			t.Fatalf("after 1000 one-byte writes: %q, want fewer x's, then the overflow's farewell", string(rest[max(0, len(rest)-80):]))
		}
		if n := len(xs); n*23 > o.MaxPending {
			t.Fatalf("%d one-byte records (%d bytes) queued under a %d-byte bound", n, n*23, o.MaxPending)
		}
		if st := s.Stats(); st.Overflows != 1 {
			t.Fatalf("stats %+v: want one overflow", st)
		}
	})
}

// TestTLSConnectionsCostNoGoroutine: once its handshake is done, a TLS
// connection of the loops has no goroutine of its own. 50 more
// connections, each served, leave the process's goroutines as they were,
// give or take the handshake pool's idle workers: sequential handshakes
// start one, or a few more where a handshake came before the last one's
// worker was idle again (a goroutine per connection would be 50 more).
func TestTLSConnectionsCostNoGoroutine(t *testing.T) {
	models(t, func(t *testing.T, o options) {
		o, conf := withTLS(t, o)
		s := start(t, newLines(t), o)
		serveMore := func(n int) {
			for range n {
				pingPong(t, dialTLS(t, s, conf))
			}
		}
		serveMore(5)
		before := runtime.NumGoroutine()
		serveMore(50)
		if after := runtime.NumGoroutine(); after > before+10 {
			t.Fatalf("%d goroutines with 5 TLS connections, %d with 55: a connection costs a goroutine", before, after)
		}
	})
}

// TestTLSHandshakesAtOnce: more clients than the handshake pool has
// workers shake hands at once, and every one is served.
func TestTLSHandshakesAtOnce(t *testing.T) {
	models(t, func(t *testing.T, o options) {
		o, conf := withTLS(t, o)
		s := start(t, newLines(t), o)
		const clients = handshakeWorkers + 16
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for range clients {
			wg.Go(func() {
				c, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", s.Addr().String(), conf)
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(ioTimeout))
				io.WriteString(c, "ping\n")
				if line, err := bufio.NewReader(c).ReadString('\n'); line != "pong\n" {
					errs <- fmt.Errorf("ping: (%q, %v)", line, err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// stallAfterHello is a client's socket that sends the first write (the
// ClientHello) and then takes no more: the handshake waits on the server
// for a second flight that never comes.
type stallAfterHello struct {
	net.Conn
	writes atomic.Int32
	stop   chan struct{}
}

func (c *stallAfterHello) Write(p []byte) (int, error) {
	if c.writes.Add(1) > 1 {
		<-c.stop
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

// TestTLSShutdownCutsHandshakes: shutdown does not wait for handshakes
// that would take until their timeout: a client that never starts one,
// and one that sends its hello and nothing more (so a worker waits for
// it). Serve returns, and no goroutine is left (TestMain checks).
func TestTLSShutdownCutsHandshakes(t *testing.T) {
	models(t, func(t *testing.T, o options) {
		o.HandshakeTimeout = time.Minute
		o, conf := withTLS(t, o)
		s, served := serve(t, newLines(t), o)
		pingPong(t, dialTLS(t, s, conf)) // serving
		dial(t, s)                       // silent
		stalled := &stallAfterHello{Conn: dial(t, s), stop: make(chan struct{})}
		defer close(stalled.stop)
		handshook := make(chan error, 1)
		go func() { handshook <- tls.Client(stalled, conf).Handshake() }()
		wait.Eventually(t, ioTimeout, "the stalled client sent its hello", func() error {
			if stalled.writes.Load() < 2 {
				return errors.New("no second write yet")
			}
			return nil
		})

		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		start := time.Now()
		if err := s.Shutdown(ctx); err != nil {
			t.Fatalf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Fatalf("Serve returned %v", err)
		}
		if took := time.Since(start); took > ioTimeout/2 {
			t.Fatalf("shutdown took %v: it waited for the handshakes", took)
		}
		if st := s.Stats(); st.Accepted != 1 {
			t.Fatalf("stats %+v: want 1 accepted (after its handshake), not the 2 cut off", st)
		}
		stalled.stop <- struct{}{} // let the client's handshake fail
		<-handshook
	})
}

// TestTLSOffloadKeepsReadingToMaxInbound is
// TestOffloadKeepsReadingToMaxInbound over TLS: what the loop reads while
// an offloaded function runs is decrypted and waits as plaintext, up to
// MaxInbound, and after the function every line comes back in order.
func TestTLSOffloadKeepsReadingToMaxInbound(t *testing.T) {
	kernels(t, func(t *testing.T, o options) {
		o, conf := withTLS(t, o)
		offloadReadsAhead(t, o, func(t *testing.T, s *Server) net.Conn { return dialTLS(t, s, conf) }, maxPlaintext)
	})
}
