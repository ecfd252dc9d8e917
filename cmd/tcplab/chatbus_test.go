package main

import (
	"strings"
	"syscall"
	"testing"

	"github.com/tcplab/tcplab/app/chat/natsbus"
	"github.com/tcplab/tcplab/conformance"
	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/internal/launch"
	"github.com/tcplab/tcplab/internal/testkit"
)

// TestServeChatOnProcessModelsIsOneChat runs "tcplab serve --app chat"
// under fork (a process per client) and prefork with no --bus: the parent
// starts an embedded NATS server and its children join it, so clients
// served by different processes are in one chat. SIGTERM then says BYE to
// each and the parent exits 0, leaving no process behind.
func TestServeChatOnProcessModelsIsOneChat(t *testing.T) {
	for _, model := range []string{"fork", "prefork"} {
		t.Run(model, func(t *testing.T) {
			s := serve(t, "--addr", "127.0.0.1:0", "--app", "chat", "--framing", "line", "--model", model, "--workers", "2", "--drain-timeout", "2s")
			a := dialPeer(t, s.Addr, frame.Line)
			b := dialPeer(t, s.Addr, frame.Line)
			c := dialPeer(t, s.Addr, frame.Line)
			// Guest numbers count across the processes. b's and c's JOINs
			// come from different processes, each sent on the bus as its
			// client is answered, so a may get them in either order.
			joins := map[string]bool{a.MustRead(): true, a.MustRead(): true}
			if !joins["JOIN lobby guest-2"] || !joins["JOIN lobby guest-3"] {
				t.Fatalf("guest-1 got %v, want the JOINs of guest-2 and guest-3", joins)
			}
			b.Next("JOIN lobby guest-3")
			c.MustSend("/nick carol")
			c.Next("OK nick carol")
			a.MustSend("/nick carol")
			a.Next("ERR nick-taken carol")
			c.MustSend("hello, processes")
			a.Next("MSG lobby carol hello, processes")
			b.Next("MSG lobby carol hello, processes")
			b.MustSend("/who")
			b.Next("OK who carol guest-1 guest-2")
			a.MustSend("/msg carol psst")
			a.Next("OK msg")
			c.Next("PRIV guest-1 psst")

			if err := s.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			for _, p := range []*testkit.Client{a, b, c} {
				for { // the others' LEAVE may come first: they close at once
					f := p.MustRead()
					if f == "BYE shutting-down" {
						break
					}
					if !strings.HasPrefix(f, "LEAVE lobby ") {
						t.Fatalf("before BYE: %q", f)
					}
				}
			}
			if err := s.Wait(testkit.Bound); err != nil {
				t.Fatalf("exit after SIGTERM: %v", err)
			}
			conformance.CheckNoStrays(t)
		})
	}
}

// TestServeChatJoinsAnExistingBus runs two "tcplab serve --app chat --bus
// nats://..." processes against a NATS server the test runs (the list also
// names a port where nothing listens, which the client skips): their
// clients are in one chat.
func TestServeChatJoinsAnExistingBus(t *testing.T) {
	ns, err := natsbus.StartEmbedded(natsbus.EmbeddedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown) // after the servers, whose cleanups come later
	bus := ns.URL() + ",nats://127.0.0.1:1"
	var servers []*launch.Process
	var peers []*testkit.Client
	for range 2 {
		s := serve(t, "--addr", "127.0.0.1:0", "--app", "chat", "--framing", "line", "--bus", bus)
		servers = append(servers, s)
		peers = append(peers, dialPeer(t, s.Addr, frame.Line))
	}
	a, b := peers[0], peers[1]
	a.Next("JOIN lobby guest-2")
	b.MustSend("across processes")
	a.Next("MSG lobby guest-2 across processes")
	a.MustSend("/who")
	a.Next("OK who guest-1 guest-2")
	for _, s := range servers {
		stop(t, s)
	}
}
