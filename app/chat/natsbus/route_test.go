package natsbus_test

import (
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// holdProxy carries one NATS server's routes to another, and can hold
// what the far server sends: as if its last writes were still in the
// sockets, or unread by the near server, when it dies.
type holdProxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	held  bool
	links []*proxyLink
}

// proxyLink is one proxied connection: near is the near server's, far
// the far server's.
type proxyLink struct {
	near, far net.Conn
	kept      []byte // what far sent while held
	farDone   bool   // far closed (the far server died)
}

func startHoldProxy(t *testing.T, target string) *holdProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &holdProxy{t: t, ln: ln, target: target}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *holdProxy) accept() {
	for {
		near, err := p.ln.Accept()
		if err != nil {
			return
		}
		far, err := net.Dial("tcp", p.target)
		if err != nil {
			near.Close()
			continue
		}
		l := &proxyLink{near: near, far: far}
		p.mu.Lock()
		p.links = append(p.links, l)
		p.mu.Unlock()
		p.wg.Go(func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := near.Read(buf)
				if n > 0 {
					far.Write(buf[:n])
				}
				if err != nil {
					far.Close()
					return
				}
			}
		})
		p.wg.Go(func() { p.fromFar(l) })
	}
}

// fromFar passes what the far server sends on, or keeps it while held.
func (p *holdProxy) fromFar(l *proxyLink) {
	buf := make([]byte, 32<<10)
	for {
		n, err := l.far.Read(buf)
		p.mu.Lock()
		if p.held {
			l.kept = append(l.kept, buf[:n]...)
		} else if n > 0 {
			l.near.Write(buf[:n])
		}
		if err != nil {
			l.farDone = true
			if !p.held {
				l.near.Close()
			}
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
}

func (p *holdProxy) hold() {
	p.mu.Lock()
	p.held = true
	p.mu.Unlock()
}

// kept is how many bytes the proxy holds.
func (p *holdProxy) kept() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.links {
		n += len(l.kept)
	}
	return n
}

// release delivers what was held, and closes the links whose far server
// has closed.
func (p *holdProxy) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.held = false
	for _, l := range p.links {
		l.near.Write(l.kept)
		l.kept = nil
		if l.farDone {
			l.near.Close()
		}
	}
}

func (p *holdProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, l := range p.links {
		l.near.Close()
		l.far.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// startRouted starts a NATS server (no JetStream) in cluster "routed",
// with routes to routes (may be empty).
func startRouted(t *testing.T, name string, clusterPort int, routes string) *server.Server {
	t.Helper()
	o := &server.Options{ServerName: name, Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		Cluster: server.ClusterOpts{Name: "routed", Host: "127.0.0.1", Port: clusterPort}}
	if routes != "" {
		o.Routes = server.RoutesFromStr(routes)
	}
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(ioTimeout) {
		t.Fatalf("%s not ready within %v", name, ioTimeout)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// waitUntil polls cond every millisecond, failing after ioTimeout.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, ioTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestNATSReturnsOwnMessagesThroughARoute pins the NATS behaviour that
// the bus guards against (Stats.Echoes, TestOwnEventsThatComeBackAreDropped):
// NoEcho keeps a connection's own server from delivering its messages
// back to it, but a route does not. A connection publishes on s1, which
// writes the message on its route to s2 (where another client is
// interested); s2 reads it late (the proxy holds it); s1 dies, the
// connection fails over to s2 and subscribes there; then s2 reads s1's
// last bytes and delivers the message to the connection that sent it.
func TestNATSReturnsOwnMessagesThroughARoute(t *testing.T) {
	// roomSubscriber connects to urls, closed when the test ends, and
	// subscribes to "room".
	roomSubscriber := func(t *testing.T, urls string, opts ...nats.Option) (*nats.Conn, *nats.Subscription) {
		t.Helper()
		nc, err := nats.Connect(urls, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		sub, err := nc.SubscribeSync("room")
		if err != nil {
			t.Fatal(err)
		}
		return nc, sub
	}
	port := freePort(t)
	p := startHoldProxy(t, "127.0.0.1:"+strconv.Itoa(port))
	s1 := startRouted(t, "s1", port, "")
	s2 := startRouted(t, "s2", server.RANDOM_PORT, "nats-route://"+p.ln.Addr().String())
	waitUntil(t, "s1 and s2 routed", func() bool { return s1.NumRoutes() > 0 && s2.NumRoutes() > 0 })

	other, otherGot := roomSubscriber(t, s2.ClientURL())
	other.Flush()
	waitUntil(t, "s1 knows s2's interest", func() bool { return s1.GlobalAccount().Interest("room") > 0 })

	me, meGot := roomSubscriber(t, s1.ClientURL()+","+s2.ClientURL(), nats.NoEcho(), nats.DontRandomize(),
		nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond))
	p.hold()
	if err := me.Publish("room", []byte("mine")); err != nil {
		t.Fatal(err)
	}
	me.Flush() // s1 has it
	waitUntil(t, "s1 writes it on its route", func() bool { return p.kept() > 0 })
	s1.Shutdown()
	s1.WaitForShutdown()
	waitUntil(t, "failover to s2", func() bool { return me.IsConnected() && me.ConnectedUrl() == s2.ClientURL() })
	if err := me.FlushTimeout(ioTimeout); err != nil { // s2 has the subscription
		t.Fatal(err)
	}
	p.release()

	for name, sub := range map[string]*nats.Subscription{"the other client": otherGot, "the sender itself": meGot} {
		m, err := sub.NextMsg(ioTimeout)
		if err != nil || string(m.Data) != "mine" {
			t.Errorf("%s: %v %v; want the message", name, m, err)
		}
	}
}
