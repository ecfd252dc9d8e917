package netstat

import (
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/tcplab/tcplab/internal/listener"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const sample = `TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPTimeouts
TcpExt: 0 17 19 5
IpExt: InNoRoutes InOctets
IpExt: 0 123
`

func TestParseListen(t *testing.T) {
	l, err := ParseListen([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	if l != (Listen{Overflows: 17, Drops: 19}) {
		t.Fatalf("got %+v", l)
	}
	ip, err := Parse([]byte(sample), "IpExt")
	if err != nil || ip["InOctets"] != 123 {
		t.Fatalf("IpExt: %v, %v", ip, err)
	}
	if d := (Listen{Overflows: 20, Drops: 3}).Sub(Listen{Overflows: 17, Drops: 19}); d != (Listen{Overflows: 3}) {
		t.Fatalf("Sub: %+v", d)
	}
}

func TestParseRejectsMalformed(t *testing.T) {
	for _, in := range []string{
		"",
		"TcpExt: ListenOverflows ListenDrops\n",
		"TcpExt: ListenOverflows ListenDrops\nTcpExt: 1\n",
		"TcpExt: ListenOverflows ListenDrops\nTcpExt: 1 x\n",
		"TcpExt: A B\nTcpExt: 1 2\n",
	} {
		if _, err := ParseListen([]byte(in)); err == nil {
			t.Errorf("ParseListen(%q) succeeded", in)
		}
	}
}

// TestOverflowingABacklogCounts fills a listener that never accepts and
// expects the kernel's ListenOverflows counter to rise.
func TestOverflowingABacklogCounts(t *testing.T) {
	fd, addr, err := listener.FD("127.0.0.1:0", listener.Options{Backlog: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	before, err := ReadListen()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	for range 8 {
		wg.Go(func() {
			if c, err := net.DialTimeout("tcp", addr.String(), 300*time.Millisecond); err == nil {
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, c := range conns {
		c.Close()
	}
	after, err := ReadListen()
	if err != nil {
		t.Fatal(err)
	}
	if d := after.Sub(before); d.Overflows == 0 || d.Drops < d.Overflows {
		t.Fatalf("8 connects to a backlog of 1 that is never accepted: delta %+v, want overflows", d)
	}
}

func TestSysctlsAndPortRange(t *testing.T) {
	n, err := SysctlInt("net.core.somaxconn")
	if err != nil || n < 1 || n != listener.Somaxconn() {
		t.Fatalf("somaxconn %d, %v (listener says %d)", n, err, listener.Somaxconn())
	}
	r, err := LocalPortRange()
	if err != nil || r.Size() < 1 {
		t.Fatalf("port range %+v, %v", r, err)
	}
	for _, bad := range []string{"", "../../etc/passwd", "net/core/somaxconn", "no.such.sysctl"} {
		if _, err := Sysctl(bad); err == nil {
			t.Errorf("Sysctl(%q) succeeded", bad)
		}
	}
	if _, err := SysctlInt("net.ipv4.ip_local_port_range"); err == nil {
		t.Error("SysctlInt of a two-number sysctl succeeded")
	}
	for _, bad := range []string{"1", "a b", "5 4", "0 10", "1 70000"} {
		if _, err := ParsePortRange(bad); err == nil {
			t.Errorf("ParsePortRange(%q) succeeded", bad)
		}
	}
	if r, err := ParsePortRange("32768\t60999\n"); err != nil || r.Size() != 28232 {
		t.Errorf("ParsePortRange: %+v, %v", r, err)
	}
}
