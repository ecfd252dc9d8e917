package natsbus_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcplab/tcplab/app/chat/natsbus"
	"github.com/tcplab/tcplab/internal/testkit"
)

// TestNickUniqueAcrossCluster: twelve clients on three nodes, each node on
// its own server of a 3-server cluster, ask for the same nick at once, five
// times over. Exactly one gets it each time; the rest get nick-taken.
func TestNickUniqueAcrossCluster(t *testing.T) {
	c := startCluster(t)
	nodes := clusterNodes(t, c, [3]int{0, 1, 2})
	var clients []*testkit.Client
	for i := range 12 {
		clients = append(clients, dial(t, nodes[i%3]))
	}
	for round := range 5 {
		nick := fmt.Sprintf("highlander%d", round)
		replies := make([]string, len(clients))
		var wg sync.WaitGroup
		for i, cl := range clients {
			wg.Go(func() {
				if err := cl.Send("/nick " + nick); err != nil {
					replies[i] = err.Error()
					return
				}
				f, err := cl.Read() // past presence
				if err != nil {
					f = err.Error()
				}
				replies[i] = f
			})
		}
		wg.Wait()
		won := 0
		for i, r := range replies {
			switch r {
			case "OK nick " + nick:
				won++
			case "ERR nick-taken " + nick:
			default:
				t.Fatalf("client %d: %q", i, r)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d clients got %s; want exactly 1", round, won, nick)
		}
	}
}

// TestClaimOfCrashedNodeExpires: a node that dies without releasing its
// nicks holds them for the claim TTL, no longer.
func TestClaimOfCrashedNodeExpires(t *testing.T) {
	ns := startNATS(t, natsbus.EmbeddedOptions{})
	o := testBusOptions(ns.URL())
	o.ClaimTTL = time.Second
	n1, n2 := startNode(t, o), startNode(t, o)
	join(t, n1, "zed", "")
	b := dial(t, n2)
	b.Call("/nick zed", "ERR nick-taken zed")
	n1.net.Crash()
	b.Call("/nick zed", "ERR nick-taken zed") // still claimed: it has not expired
	testkit.Eventually(t, ioTimeout, "zed is free once its dead node's claim expired (TTL 1s)", func() error {
		b.MustSend("/nick zed")
		switch f := b.MustRead(); f {
		case "OK nick zed":
			return nil
		case "ERR nick-taken zed":
			return errors.New("zed still taken")
		default:
			t.Fatalf("got %q", f)
			return nil
		}
	})
}

// TestOutage: the NATS server goes away and comes back on the same port.
// Both nodes' clients stay connected and get NOTICE bus-down, then
// bus-up. What alice sends meanwhile waits in her node's reconnect buffer
// (4 KiB here); past it she gets ERR unavailable for each message, and
// Stats.PublishErrors counts them. Every message is then either delivered
// to bob, in order, or reported: to alice as ERR unavailable, or to bob as
// NOTICE lost. Traffic resumes after the reconnect, and so do nick claims
// on the new server.
func TestOutage(t *testing.T) {
	port := freePort(t)
	ns := startNATS(t, natsbus.EmbeddedOptions{Port: port})
	o := testBusOptions(ns.URL())
	o.ReconnectBufSize = 4096
	o.ReconnectWait = 50 * time.Millisecond
	n1, n2 := startNode(t, o), startNode(t, o)
	a := join(t, n1, "alice", "")
	b := join(t, n2, "bob", "")
	a.Skip, b.Skip = testkit.Presence, testkit.Presence // the notices are what this test reads
	a.Next("JOIN lobby " + "guest-2")
	// A receiving node counts gaps from the first event it has seen from
	// an origin; this is bob's node's first from alice's.
	a.MustSend("hello")
	b.Next("MSG lobby alice hello")

	ns.Shutdown()
	a.NextPrefix("NOTICE bus-down ")
	b.NextPrefix("NOTICE bus-down ")
	const sent = 60
	pad := strings.Repeat("x", 200)
	for i := range sent {
		a.MustSend(fmt.Sprintf("m-%d %s", i, pad))
	}
	refused := 0
	for _, f := range a.Sync() {
		switch {
		case strings.HasPrefix(f, "ERR unavailable "):
			refused++
		default:
			t.Fatalf("alice: %q", f)
		}
	}
	if st := n1.net.Stats(); refused == 0 || refused == sent || st.PublishErrors != uint64(refused) {
		t.Fatalf("alice got %d ERR unavailable for %d messages; PublishErrors %d", refused, sent, st.PublishErrors)
	}

	startNATS(t, natsbus.EmbeddedOptions{Port: port})
	a.NextPrefix("NOTICE bus-up ")
	b.NextPrefix("NOTICE bus-up ")
	// bob's "ready" reaching alice shows bob's node has its subscriptions
	// back on the server (they went before it, on the same connection).
	b.MustSend("ready")
	a.Next("MSG lobby bob ready")
	a.MustSend("after")

	next, delivered, reported := 0, 0, 0
	for {
		f := b.MustRead()
		if f == "MSG lobby alice after" {
			break
		}
		var i int
		var lost int
		switch {
		case strings.HasPrefix(f, "MSG lobby alice m-"):
			fmt.Sscanf(f, "MSG lobby alice m-%d", &i)
			if i < next {
				t.Fatalf("bob: m-%d after m-%d", i, next-1)
			}
			next = i + 1
			delivered++
		case strings.HasPrefix(f, "NOTICE lost lobby "):
			fmt.Sscanf(f, "NOTICE lost lobby %d", &lost)
			reported += lost
		default:
			t.Fatalf("bob: %q", f)
		}
	}
	t.Logf("sent %d: delivered %d, refused to the sender %d, reported lost to the receiver %d", sent, delivered, refused, reported)
	if delivered+refused+reported != sent {
		t.Errorf("delivered %d + refused %d + reported lost %d != sent %d", delivered, refused, reported, sent)
	}
	if st := n2.net.Stats(); st.Lost != uint64(reported) {
		t.Errorf("bob's node counted %d lost; bob was told %d", st.Lost, reported)
	}
	// The new server lost the nick bucket and the guest stream (they live
	// in memory): the nodes make them again, and newcomers get in.
	c := dial(t, n1)
	c.Call("/nick carol", "OK nick carol")
	b.Call("/nick carol", "ERR nick-taken carol")
	// Stop the nodes before the server, whose cleanup comes first.
	n1.stop(t)
	n2.stop(t)
}

// TestRenewalAdoptsItsOwnLostWrite: a renewal that timed out after
// JetStream applied it leaves the node holding a stale revision of its own
// claim (made here by rewriting the key behind the claim's back). The next
// renewal finds the key holding the node's own value and carries on: no
// conflict is counted, private messages from the other node still arrive,
// the nick stays taken for others, and releasing it frees it.
func TestRenewalAdoptsItsOwnLostWrite(t *testing.T) {
	ns := startNATS(t, natsbus.EmbeddedOptions{})
	o := testBusOptions(ns.URL())
	n1, n2 := startNode(t, o), startNode(t, o)
	a := join(t, n1, "alice", "")
	b := join(t, n2, "bob", "")
	for range 2 {
		if err := n1.net.RewriteClaim("alice"); err != nil {
			t.Fatal(err)
		}
		n1.net.RenewClaims()
	}
	if st := n1.net.Stats(); st.NickConflicts != 0 {
		t.Fatalf("renewing a claim whose last write was the node's own counted %d conflicts", st.NickConflicts)
	}
	b.Call("/msg alice still there?", "OK msg")
	a.Next("PRIV bob still there?")
	b.Call("/nick alice", "ERR nick-taken alice")
	// The release deletes the key at the revision the node holds: the
	// adopted one, or the nick would stay taken until it expired.
	a.Call("/nick alice2", "OK nick alice2")
	b.Call("/nick alice", "OK nick alice")
}

// TestClaimAdoptsItsOwnOrphan: a claim that timed out after JetStream
// applied it leaves a key holding the node's value that the node does not
// hold (made here by writing it behind the node's back). The node's next
// claim of that nick adopts it instead of finding it taken until it
// expires; another client of the same node still finds it taken, and so
// does the other node.
func TestClaimAdoptsItsOwnOrphan(t *testing.T) {
	ns := startNATS(t, natsbus.EmbeddedOptions{})
	o := testBusOptions(ns.URL())
	n1, n2 := startNode(t, o), startNode(t, o)
	if err := n1.net.RewriteClaim("orphan"); err != nil {
		t.Fatal(err)
	}
	a := dial(t, n1)
	a.Call("/nick orphan", "OK nick orphan")
	a.Name = "orphan"
	d := dial(t, n1)
	d.Call("/nick orphan", "ERR nick-taken orphan")
	b := join(t, n2, "bob", "")
	b.Call("/nick orphan", "ERR nick-taken orphan")
	b.Call("/msg orphan hi", "OK msg")
	a.Next("PRIV bob hi")
	a.Call("/nick other", "OK nick other")
	d.Call("/nick orphan", "OK nick orphan")
	if st := n1.net.Stats(); st.NickConflicts != 0 {
		t.Errorf("%d nick conflicts", st.NickConflicts)
	}
}
