package admit

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"go.uber.org/goleak"

	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/testkit/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestNoLimitsIsNil(t *testing.T) {
	l := New(Options{})
	if l != nil {
		t.Fatal("New with no limits should return nil")
	}
	if err := l.Admit(addr("192.0.2.1")); err != nil {
		t.Fatal(err)
	}
	l.Release(addr("192.0.2.1")) // must not panic
}

func TestPerAddressCap(t *testing.T) {
	l := New(Options{MaxPerIP: 3})
	a, b := addr("192.0.2.1"), addr("192.0.2.2")
	for i := range 3 {
		if err := l.Admit(a); err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
	}
	if err := l.Admit(a); !errors.Is(err, handler.ErrTooManyConns) {
		t.Fatalf("4th connection: %v, want %v", err, handler.ErrTooManyConns)
	}
	if err := l.Admit(b); err != nil {
		t.Fatalf("another address: %v", err)
	}
	l.Release(a)
	if err := l.Admit(a); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	// An IPv4-mapped IPv6 address is the same IPv4 address.
	if err := l.Admit(addr("::ffff:192.0.2.1")); !errors.Is(err, handler.ErrTooManyConns) {
		t.Fatalf("mapped address: %v", err)
	}
}

func TestLoopbackExemptUnlessLimited(t *testing.T) {
	for _, lb := range []string{"127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"} {
		l := New(Options{MaxPerIP: 1})
		for range 5 {
			if err := l.Admit(addr(lb)); err != nil {
				t.Fatalf("%s is loopback and exempt: %v", lb, err)
			}
		}
		if l.Tracked() != 0 {
			t.Fatalf("%s: exempt addresses tracked", lb)
		}
		l = New(Options{MaxPerIP: 1, LimitLoopback: true})
		l.Admit(addr(lb))
		if err := l.Admit(addr(lb)); !errors.Is(err, handler.ErrTooManyConns) {
			t.Fatalf("%s with LimitLoopback: %v", lb, err)
		}
	}
}

func TestIPv6CountedBySlash64(t *testing.T) {
	l := New(Options{MaxPerIP: 2})
	l.Admit(addr("2001:db8::1"))
	l.Admit(addr("2001:db8::ffff:2"))
	if err := l.Admit(addr("2001:db8::3")); !errors.Is(err, handler.ErrTooManyConns) {
		t.Fatalf("third address of one /64: %v", err)
	}
	if err := l.Admit(addr("2001:db8:0:1::1")); err != nil {
		t.Fatalf("another /64: %v", err)
	}
	if err := l.Admit(addr("fe80::1%eth0")); err != nil {
		t.Fatalf("zoned address: %v", err)
	}
}

func TestConnectionRate(t *testing.T) {
	l := New(Options{Rate: 20, Burst: 2})
	a := addr("198.51.100.7")
	for i := range 2 {
		if err := l.Admit(a); err != nil {
			t.Fatalf("burst connection %d: %v", i+1, err)
		}
		l.Release(a)
	}
	if err := l.Admit(a); !errors.Is(err, handler.ErrConnRate) {
		t.Fatalf("past the burst: %v, want %v", err, handler.ErrConnRate)
	}
	if err := l.Admit(addr("198.51.100.8")); err != nil {
		t.Fatalf("another address: %v", err)
	}
	// The bucket refills at 20 a second: a token is back within a few
	// tens of milliseconds (bounded here by a second).
	wait.Eventually(t, wait.Bound, "the bucket refills", func() error { return l.Admit(a) })
}

// TestMemoryBounded admits and releases connections from 100,000
// addresses: the table must stay bounded, since an attacker can use many
// addresses.
func TestMemoryBounded(t *testing.T) {
	l := New(Options{MaxPerIP: 4, Rate: 0.001, Burst: 4})
	most := 0
	for i := range 100_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if err := l.Admit(a); err != nil {
			t.Fatal(err)
		}
		l.Release(a)
		most = max(most, l.Tracked())
	}
	if most > minSweep {
		t.Fatalf("tracked up to %d addresses, want at most %d", most, minSweep)
	}
	// Addresses with open connections are never forgotten.
	l = New(Options{MaxPerIP: 1, Rate: 0.001, Burst: 4})
	held := addr("203.0.113.9")
	l.Admit(held)
	for i := range 3 * minSweep {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		l.Admit(a)
		l.Release(a)
	}
	if err := l.Admit(held); !errors.Is(err, handler.ErrTooManyConns) {
		t.Fatalf("an address with a connection open was forgotten: %v", err)
	}
}

func TestRefusalsByReason(t *testing.T) {
	var r Refusals
	r.Add(handler.ErrServerFull)
	r.Add(fmt.Errorf("chat: %w", handler.ErrServerFull))
	r.Add(handler.ErrTooManyConns)
	r.Add(handler.ErrConnRate)
	r.Add(handler.ErrShutdown)
	r.Add(errors.New("something else"))
	want := map[string]uint64{ReasonServerFull: 2, ReasonTooManyConns: 1, ReasonConnRate: 1, ReasonShutdown: 1, ReasonOther: 1}
	got := r.Snapshot()
	if len(got) != len(Reasons()) {
		t.Fatalf("snapshot %v lacks reasons", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d, want %d", k, got[k], v)
		}
	}
}
