package natsbus_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tcplab/tcplab/app/chat"
	"github.com/tcplab/tcplab/app/chat/natsbus"
	"github.com/tcplab/tcplab/internal/testkit"
)

// cluster is three NATS servers routed to each other on 127.0.0.1, with
// JetStream.
type cluster struct {
	servers []*natsbus.Embedded
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	// Clustered JetStream wants every server's routes configured from the
	// start, so the route ports are picked first: free loopback ports,
	// which nothing else on the machine takes in the moment between.
	var ports [3]int
	var routes []string
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[i]))
	}
	c := &cluster{servers: make([]*natsbus.Embedded, 3)}
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range ports {
		wg.Go(func() {
			c.servers[i], errs[i] = natsbus.StartEmbedded(natsbus.EmbeddedOptions{
				Name: fmt.Sprintf("s%d", i+1), Cluster: "tcplab", ClusterPort: ports[i], Routes: routes,
			})
		})
	}
	wg.Wait()
	for i, s := range c.servers {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		t.Cleanup(s.Shutdown)
	}
	c.waitJetStream(t)
	return c
}

// waitJetStream waits until the cluster can place a stream on all three
// servers, as the first node's nick bucket will be: a meta leader is
// elected and knows its peers.
func (c *cluster) waitJetStream(t *testing.T) {
	t.Helper()
	nc, err := nats.Connect(c.urls(0))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, ioTimeout, "the cluster's JetStream places a stream on all three servers", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "probe", Subjects: []string{"probe"}, Storage: jetstream.MemoryStorage, Replicas: 3})
		cancel()
		if err != nil {
			return err
		}
		// Its own context: the creation may have used up most of the
		// second on a loaded machine (seen at a load average of 40).
		dctx, dcancel := context.WithTimeout(context.Background(), ioTimeout)
		defer dcancel()
		if err := js.DeleteStream(dctx, "probe"); err != nil {
			t.Fatalf("deleting the probe stream: %v", err)
		}
		return nil
	})
}

// waitInterest waits until every server of the cluster counts at least n
// subscriptions to room's subject. NATS tells the other servers of a new
// subscription a moment after its own server has it (docs/deploy-3-nodes.md,
// "What is not guaranteed"); until then, what they carry for the room does
// not reach the new subscriber.
func (c *cluster) waitInterest(t *testing.T, room string, n int) {
	t.Helper()
	subject := "tcplab.chat.room." + room
	start := time.Now()
	testkit.Eventually(t, ioTimeout, fmt.Sprintf("every server counts %d subscriptions to %s", n, subject), func() error {
		ready := 0
		for _, s := range c.servers {
			if s.Interest(subject) >= n {
				ready++
			}
		}
		if ready < len(c.servers) {
			return fmt.Errorf("%d of %d servers do", ready, len(c.servers))
		}
		return nil
	})
	t.Logf("%s: interest on every server after %v", subject, time.Since(start).Round(time.Microsecond))
}

func (c *cluster) metaLeader() int {
	for i, s := range c.servers {
		if s.IsMetaLeader() {
			return i
		}
	}
	return -1
}

// urls lists the servers' client URLs, first first.
func (c *cluster) urls(first int) string {
	urls := []string{c.servers[first].URL()}
	for i, s := range c.servers {
		if i != first {
			urls = append(urls, s.URL())
		}
	}
	return strings.Join(urls, ",")
}

// clusterNodes starts three tcplab nodes, the i-th attached first to
// server order[i] and failing over to the others.
func clusterNodes(t *testing.T, c *cluster, order [3]int) [3]*node {
	var nodes [3]*node
	for i, s := range order {
		o := testBusOptions(c.urls(s))
		o.InOrder = true
		o.Replicas = 3
		o.ReconnectWait = 50 * time.Millisecond
		nodes[i] = startNode(t, o)
	}
	return nodes
}

// numbered is message i of sender from: "<from>-<i>".
func numbered(from string, i int) string { return from + "-" + strconv.Itoa(i) }

// tally is what one receiver got from each sender.
type tally struct {
	got     map[string][]int // sender -> indices, in arrival order
	lostRep uint64           // events reported lost by NOTICE lost
	notices []string
}

// receive reads MSG frames "MSG <room> <sender> <sender>-<i>" until every
// sender in want has delivered its last index (total-1), or the
// connection fails. It records NOTICE frames.
func receive(c *testkit.Client, room string, want map[string]int) (*tally, error) {
	c.Skip = nil // notices count here
	tl := &tally{got: map[string][]int{}}
	done := 0
	for done < len(want) {
		f, err := c.Read()
		if err != nil {
			return tl, fmt.Errorf("%s: %w (got %v)", c.Name, err, counts(tl.got))
		}
		if n, ok := strings.CutPrefix(f, "NOTICE "); ok {
			tl.notices = append(tl.notices, n)
			var r string
			var lost uint64
			if _, err := fmt.Sscanf(n, "lost %s %d", &r, &lost); err == nil && r == room {
				tl.lostRep += lost
			}
			continue
		}
		var r, from, text string
		if _, err := fmt.Sscanf(f, "MSG %s %s %s", &r, &from, &text); err != nil {
			continue // presence
		}
		total, ok := want[from]
		i, err := strconv.Atoi(strings.TrimPrefix(text, from+"-"))
		if !ok || r != room || err != nil {
			return tl, fmt.Errorf("%s: unexpected %q", c.Name, f)
		}
		tl.got[from] = append(tl.got[from], i)
		if i == total-1 {
			done++
		}
	}
	return tl, nil
}

func counts(m map[string][]int) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		out[k] = len(v)
	}
	return out
}

// inOrder checks that got is strictly increasing, and returns how many of
// 0..total-1 are missing.
func inOrder(got []int, total int) (missing int, err error) {
	for k := 1; k < len(got); k++ {
		if got[k] <= got[k-1] {
			return 0, fmt.Errorf("message %d after %d", got[k], got[k-1])
		}
	}
	return total - len(got), nil
}

// TestClusterOrdering: three NATS servers in a cluster and three tcplab
// nodes, each attached to its own server. Three senders on node C and one
// on node B send as fast as they can; every client on node A gets every
// message, in order per sender, once.
func TestClusterOrdering(t *testing.T) {
	c := startCluster(t)
	nodes := clusterNodes(t, c, [3]int{0, 1, 2})
	a, b, cn := nodes[0], nodes[1], nodes[2]
	const total = 1000
	receivers := []*testkit.Client{join(t, a, "ra1", "news"), join(t, a, "ra2", "news")}
	c.waitInterest(t, "news", 1) // A's, everywhere
	senders := []*testkit.Client{join(t, cn, "sc1", "news"), join(t, cn, "sc2", "news"), join(t, cn, "sc3", "news"), join(t, b, "sb1", "news")}
	want := map[string]int{}
	for _, s := range senders {
		want[s.Name] = total
		for _, r := range receivers {
			r.Next("JOIN news " + s.Name) // the path from s's node to A works
		}
	}

	results := make([]*tally, len(receivers))
	errs := make([]error, len(receivers))
	var wg sync.WaitGroup
	for i, r := range receivers {
		wg.Go(func() { results[i], errs[i] = receive(r, "news", want) })
	}
	stopDrain := drainAll(senders) // senders hear each other; keep reading
	defer stopDrain()
	var send sync.WaitGroup
	for _, s := range senders {
		send.Go(func() {
			msgs := make([]string, total)
			for i := range msgs {
				msgs[i] = numbered(s.Name, i)
			}
			if err := s.Send(msgs...); err != nil {
				t.Error(err)
			}
		})
	}
	send.Wait()
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, tl := range results {
		for _, s := range senders {
			missing, err := inOrder(tl.got[s.Name], total)
			if err != nil || missing != 0 || len(tl.notices) != 0 {
				t.Errorf("%s from %s: %d missing, order: %v, notices %q", receivers[i].Name, s.Name, missing, err, tl.notices)
			}
		}
	}
	if st := a.net.Stats(); st.Lost != 0 || st.Duplicates != 0 || st.Received < 4*total {
		t.Errorf("node A: %+v", st)
	}
}

// drainAll reads each client in the background, keeping its NOTICE
// frames, until the returned stop closes the connections; stop returns
// the notices per client.
func drainAll(cs []*testkit.Client) (stop func() [][]string) {
	notices := make([][]string, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		c.Skip = nil // notices count here
		wg.Go(func() {
			for {
				f, err := c.Read()
				if err != nil {
					return
				}
				if n, ok := strings.CutPrefix(f, "NOTICE "); ok {
					notices[i] = append(notices[i], n)
				}
			}
		})
	}
	return func() [][]string {
		for _, c := range cs {
			c.Close()
		}
		wg.Wait()
		return notices
	}
}

// TestClusterFailover kills a NATS server mid-stream. Two senders on node
// C, attached to that server, and one on node B send a paced stream to
// room news; clients on node A (and one on C) receive it. C's clients stay
// connected and get NOTICE bus-down and bus-up, C reconnects to another
// server and the stream goes on. Every message arrives at most once and in
// order per sender; the ones lost in the failover window are exactly the
// ones reported by NOTICE lost and counted in Stats.Lost, and there are at
// most failoverLossBound of them per receiver.
func TestClusterFailover(t *testing.T) {
	c := startCluster(t)
	kill := 0 // a server that does not lead JetStream, so claims go on
	if c.metaLeader() == 0 {
		kill = 1
	}
	others := []int{}
	for i := range c.servers {
		if i != kill {
			others = append(others, i)
		}
	}
	nodes := clusterNodes(t, c, [3]int{others[0], others[1], kill})
	a, b, cn := nodes[0], nodes[1], nodes[2]

	const total, killAt, pace = 500, 150, 2 * time.Millisecond
	receivers := []*testkit.Client{join(t, a, "ra1", "news"), join(t, a, "ra2", "news"), join(t, cn, "rc", "news")}
	c.waitInterest(t, "news", 2) // A's and C's, everywhere
	senders := []*testkit.Client{join(t, cn, "sc1", "news"), join(t, cn, "sc2", "news"), join(t, b, "sb", "news")}
	for _, s := range senders {
		for _, r := range receivers {
			if r.Name != "rc" || s.Name == "sb" {
				r.Next("JOIN news " + s.Name)
			}
		}
	}
	fromC := map[string]int{"sc1": total, "sc2": total}
	all := map[string]int{"sc1": total, "sc2": total, "sb": total}

	results := make([]*tally, len(receivers))
	errs := make([]error, len(receivers))
	var recv sync.WaitGroup
	for i, r := range receivers {
		recv.Go(func() { results[i], errs[i] = receive(r, "news", all) })
	}
	stopDrain := drainAll(senders)
	killed := make(chan struct{})
	var send sync.WaitGroup
	for si, s := range senders {
		send.Go(func() {
			for i := range total {
				if si == 0 && i == killAt {
					close(killed)
				}
				if err := s.Send(numbered(s.Name, i)); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(pace)
			}
		})
	}
	<-killed
	killedAt := time.Now()
	c.servers[kill].Shutdown()
	send.Wait()
	recv.Wait()
	notices := stopDrain()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("killed server s%d at message %d; the stream ended %v later", kill+1, killAt, time.Since(killedAt).Round(time.Millisecond))

	for i, r := range receivers {
		tl := results[i]
		// What crossed the killed server: C's senders' messages to A, and
		// sb's messages to rc on C. The rest must all arrive.
		lost := 0
		for from := range all {
			missing, err := inOrder(tl.got[from], total)
			if err != nil {
				t.Errorf("%s from %s: %v", r.Name, from, err)
			}
			_, senderOnC := fromC[from]
			if crossed := senderOnC != (r.Name == "rc"); crossed {
				lost += missing
			} else if missing != 0 {
				t.Errorf("%s lost %d of %s's messages, which never passed the killed server", r.Name, missing, from)
			}
		}
		t.Logf("%s: lost %d, reported lost %d, notices %q", r.Name, lost, tl.lostRep, tl.notices)
		if uint64(lost) != tl.lostRep {
			t.Errorf("%s: %d messages missing, %d reported by NOTICE lost", r.Name, lost, tl.lostRep)
		}
		if lost > failoverLossBound {
			t.Errorf("%s: %d messages lost in the failover, over the bound of %d", r.Name, lost, failoverLossBound)
		}
	}
	stA, stC := a.net.Stats(), cn.net.Stats()
	t.Logf("node A: %+v", stA)
	t.Logf("node C: %+v", stC)
	if lost := results[0].lostRep; stA.Lost != lost || results[1].lostRep != lost {
		t.Errorf("node A counted %d lost; its clients were told %d and %d", stA.Lost, lost, results[1].lostRep)
	}
	if stC.Lost != results[2].lostRep {
		t.Errorf("node C counted %d lost; rc was told %d", stC.Lost, results[2].lostRep)
	}
	if stA.Duplicates+stC.Duplicates != 0 {
		t.Errorf("duplicates dropped: A %d, C %d", stA.Duplicates, stC.Duplicates)
	}
	if stC.Disconnects == 0 || stC.Reconnects == 0 {
		t.Errorf("node C: %d disconnects, %d reconnects; want both", stC.Disconnects, stC.Reconnects)
	}
	for i, s := range senders[:2] { // C's clients heard about it, and stayed
		if !hasPrefix(notices[i], "bus-down ") || !hasPrefix(notices[i], "bus-up ") {
			t.Errorf("%s got notices %q; want bus-down and bus-up", s.Name, notices[i])
		}
	}
	receivers[2].Sync() // rc is still connected and answered
}

// failoverLossBound is the most messages a receiver may miss when the
// NATS server of node C is killed while C's two senders send 500 messages
// a second each (docs/deploy-3-nodes.md): 50 ms of C's stream, for what
// was inside the server, or in the socket buffers to it, when it died.
const failoverLossBound = 50

func hasPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// TestOwnEventsThatComeBackAreDropped: a node's own room events that
// reach its subscription through another connection are dropped, not
// delivered to its members a second time. NoEcho covers only the
// connection a node published on; after a failover, the server it left
// may still pass what it published there over a route to the server it
// joined, which delivers it back to the node (what TestClusterFailover
// once hit: "rc from sc2: message 159 after 161"). Here a relay client
// plays that route: it publishes again the messages the node published,
// then an event of its own, which must be the next thing the node's other
// member gets. (The relay connects with NoEcho, so that it does not hear,
// and relay again, its own publishes.)
func TestOwnEventsThatComeBackAreDropped(t *testing.T) {
	ns := startNATS(t, natsbus.EmbeddedOptions{})
	nd := startNode(t, testBusOptions(ns.URL()))
	rc := join(t, nd, "rc", "news")
	sc := join(t, nd, "sc", "news")
	rc.Next("JOIN news sc")

	relay, err := nats.Connect(ns.URL(), nats.NoEcho())
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	const subject = "tcplab.chat.room.news"
	const sent = 2
	relayed := make(chan error, 1)
	var n int
	sub, err := relay.Subscribe(subject, func(m *nats.Msg) {
		if natsbus.EventText(m.Data) == "" {
			return // presence the node published before the relay subscribed
		}
		err := relay.Publish(subject, m.Data)
		if n++; n == sent && err == nil {
			end := chat.Event{Kind: chat.EventMsg, Room: "news", Nick: "relay", Text: []byte("end"), Origin: chat.Origin{Node: 1, Conn: 1}}
			err = relay.Publish(subject, natsbus.EventPayload(end, 1))
		}
		if err != nil || n == sent {
			select {
			case relayed <- err:
			default: // an error was reported already
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := relay.Flush(); err != nil {
		t.Fatal(err)
	}

	sc.MustSend("one", "two")
	if err := <-relayed; err != nil {
		t.Fatal(err)
	}
	rc.Next("MSG news sc one")
	rc.Next("MSG news sc two")
	if f := rc.MustRead(); f != "MSG news relay end" {
		t.Errorf("rc got %q after sc's two messages; want the relay's, and sc's not again", f)
	}
	if st := nd.net.Stats(); st.Echoes != sent || st.Duplicates != 0 {
		t.Errorf("stats %+v; want %d echoes dropped", st, sent)
	}
}
