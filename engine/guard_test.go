package engine_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tcplab/tcplab/conformance"
	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/internal/testkit"
)

// TestTLSRefusalsAreRateBounded: an address over its per-address cap on a
// TLS listener gets its refusal over TLS, but the server runs such
// handshakes at a bounded rate (16 a second, bursts of 16): of 120 refused
// connections in a row, at most that many are told, and the rest are
// closed without the handshake's crypto. Every one counts as refused.
func TestTLSRefusalsAreRateBounded(t *testing.T) {
	const extra, burst, perSecond = 120, 16, 16
	cert := conformance.NewTestCert(t)
	s := conformance.Start(t, "goroutine", conformance.Probe(), engine.Config{
		App: "probe", TLSCert: cert.CertFile, TLSKey: cert.KeyFile,
		MaxConnsPerIP: 1, LimitLoopback: true,
	})
	held, err := tls.DialWithDialer(&net.Dialer{Timeout: testkit.Bound}, "tcp", s.Addr().String(), cert.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	testkit.NewClient(t, held, frame.Line).Call("ping", "pong")

	// One after another, so that the bound on handshakes at once never
	// comes into it: only the rate does.
	start := time.Now()
	told := 0
	for range extra {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: testkit.Bound}, "tcp", s.Addr().String(), cert.ClientConfig())
		if err != nil {
			continue // closed before or during the handshake
		}
		c.SetDeadline(time.Now().Add(testkit.Bound))
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
	testkit.Eventually(t, testkit.Bound, "every refusal is counted", func() error {
		if n := s.Stats().Refused; n < extra {
			return fmt.Errorf("%d refusals counted, want %d", n, extra)
		}
		return nil
	})
}
