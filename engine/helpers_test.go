package engine_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/tcplab/tcplab/conformance"
)

// ioBound is the failure bound for every read and write in these tests.
const ioBound = 10 * time.Second

// readLine reads one line from c.
func readLine(c net.Conn) (string, error) {
	return bufio.NewReader(c).ReadString('\n')
}

// readAll reads c to its end.
func readAll(t *testing.T, c net.Conn) string {
	t.Helper()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading to the end: %v (got %q)", err, b)
	}
	return string(b)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// ping sends the probe handler's "ping" and returns its answer line (or
// what arrived instead), and any error.
func ping(c net.Conn) (string, error) {
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return "", err
	}
	return readLine(c)
}

// mustPing fails the test unless c answers a ping.
func mustPing(t *testing.T, c net.Conn) {
	t.Helper()
	if line, err := ping(c); line != "pong\n" || err != nil {
		t.Fatalf("ping: %q, %v", line, err)
	}
}

// refusal is what the probe handler sends a connection refused because
// the server is full.
const refusal = "REFUSED server full\n"

// expectRefused reads everything c receives and checks that it is the
// probe's refusal followed by the end of the connection.
func expectRefused(t *testing.T, c net.Conn) {
	t.Helper()
	got, err := io.ReadAll(c)
	if string(got) != refusal || err != nil {
		t.Fatalf("refused connection got %q, %v; want %q then EOF", got, err, refusal)
	}
}

// eventually is conformance.Eventually.
var eventually = conformance.Eventually

// servedAgain checks, retrying while the server may still be releasing a
// slot, that a new connection is served.
func servedAgain(t *testing.T, s *conformance.Server) {
	t.Helper()
	eventually(t, ioBound, func() error {
		c, err := net.DialTimeout("tcp", s.Addr().String(), ioBound)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(ioBound))
		if line, err := ping(c); line != "pong\n" {
			return fmt.Errorf("a new connection got %q (err %v) instead of pong", line, err)
		}
		return nil
	})
}

// checkCap fills a server capped at n connections (running the probe
// handler) and checks that one more connection gets the refusal and is
// closed, that the refusal is counted, that the n connections keep being
// served, and that closing one frees its slot.
func checkCap(t *testing.T, s *conformance.Server, n int) {
	t.Helper()
	held := make([]net.Conn, n)
	for i := range held {
		held[i] = s.Dial(t)
		mustPing(t, held[i])
	}
	expectRefused(t, s.Dial(t))
	if st := s.Stats(); st.Refused != 1 || st.Open != int64(n) {
		t.Fatalf("stats after one refusal: %+v, want Refused 1, Open %d", st, n)
	}
	for _, c := range held {
		mustPing(t, c)
	}
	held[0].Close()
	servedAgain(t, s)
}
