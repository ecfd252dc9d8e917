package conformance

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/internal/testkit"
)

// OffloadProbe returns a handler that drives handler.Offload over the
// wire, so the offload cases work on every model, a process model's
// children included. It reads lines:
//
//	e TEXT       reply TEXT from Data
//	q TEXT       offload a function that replies TEXT
//	p            offload a function that panics
//	w ADDR       offload a function that dials ADDR (the test's control
//	             listener) and obeys it, line by line, until told to
//	             return: "say TEXT" writes TEXT to the connection and
//	             answers "ok" or "err <reason>"; "close" closes the
//	             connection (Conn.Close) and answers "ok"; "panic"
//	             panics; "ret", or the end of the control connection,
//	             returns
//	report ADDR  when the session is Closed, it offloads a function that
//	             dials ADDR and writes "closed <calls> <running>": how
//	             many times Closed has been called, and whether a
//	             function the session offloaded was running then
//
// Each session offloads from Open a function that writes "hello", so a
// connection's first line comes from an offloaded function, ahead of any
// reply from Data. A session stops reading at a line it offloads, as
// handler.Offload says a session should, and consumes through it.
func OffloadProbe() handler.Handler {
	return handler.Func(func(c handler.Conn) handler.Session {
		s := &offloadSession{c: c}
		s.offload(func() { s.say("hello") })
		return s
	})
}

type offloadSession struct {
	c       handler.Conn
	report  string       // where Closed reports; Data sets it
	running atomic.Int32 // offloaded functions running
	closed  atomic.Int32 // Closed calls
}

// offload offloads fn, counting it as running while it runs.
func (s *offloadSession) offload(fn func()) {
	handler.Offload(s.c, func() {
		s.running.Add(1)
		defer s.running.Add(-1)
		fn()
	})
}

func (s *offloadSession) say(text string) error { return s.c.Write([]byte(text + "\n")) }

func (s *offloadSession) Data(in []byte) (int, error) {
	used := 0
	for {
		i := bytes.IndexByte(in[used:], '\n')
		if i < 0 {
			return used, nil
		}
		line := string(in[used : used+i])
		verb, arg, _ := strings.Cut(line, " ")
		used += i + 1
		switch verb {
		case "e":
			s.say(arg)
		case "q":
			s.offload(func() { s.say(arg) })
			return used, nil
		case "w":
			s.offload(func() { s.obey(arg) })
			return used, nil
		case "p":
			s.offload(func() { panic("probe panic") })
			return used, nil
		case "report":
			s.report = arg
		default:
			return used, fmt.Errorf("offload probe: unknown line %q", line)
		}
	}
}

// errProbeClose is the reason the control connection's "close" gives.
var errProbeClose = errors.New("offload probe asked to close")

// obey runs the control connection at addr: see OffloadProbe.
func (s *offloadSession) obey(addr string) {
	ctl, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		s.say("err " + err.Error())
		return
	}
	defer ctl.Close()
	ctl.SetDeadline(time.Now().Add(ioTimeout)) // a lost test does not hold the function for ever
	r := bufio.NewReader(ctl)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		switch verb {
		case "say":
			reply := "ok"
			if err := s.say(arg); err != nil {
				reply = "err " + err.Error()
			}
			io.WriteString(ctl, reply+"\n")
		case "close":
			s.c.Close(errProbeClose)
			io.WriteString(ctl, "ok\n")
		case "panic":
			panic("probe panic")
		case "ret":
			return
		}
	}
}

func (s *offloadSession) Closed(error) {
	line := fmt.Sprintf("closed %d %t\n", s.closed.Add(1), s.running.Load() > 0)
	if s.report == "" {
		return
	}
	handler.Offload(s.c, func() {
		if c, err := net.DialTimeout("tcp", s.report, ioTimeout); err == nil {
			io.WriteString(c, line)
			c.Close()
		}
	})
}

func (s *offloadSession) Farewell(reason error) []byte {
	return []byte("BYE " + reason.Error() + "\n")
}

// OffloadCases check handler.Offload's promises through OffloadProbe: the
// connection's order across offloaded and inline replies, input that
// waits for a function (a byte at a time, and past MaxInbound), a
// connection closed while its function runs, shutdown with functions in
// flight, and a function that panics.
func OffloadCases() []Case {
	return []Case{
		{"offloaded and inline replies keep the connection's order, whole or a byte at a time", offloadOrder, "offload"},
		{"input sent a byte at a time while a function runs waits for it, whole and in order", offloadTrickle, "offload"},
		{"input past MaxInbound while a function runs pauses reading, and all of it is served after", offloadPastInbound, "offload"},
		{"a connection its function closes gets Closed once, after the function returns", offloadCloseFromFunction, "offload"},
		{"a connection its peer resets while its function runs gets Closed once, after the function returns", offloadPeerReset, "offload"},
		{"Shutdown waits for a function in flight, whose writes come before the farewell", offloadShutdownWaits, "offload"},
		{"Shutdown with a function running past its deadline reports the drain cut short", offloadShutdownCut, "offload"},
		{"a panicking function closes its connection only, and is counted", offloadPanic, "offload"},
	}
}

// RunOffload runs OffloadCases against model, each on a fresh server.
func RunOffload(t *testing.T, model string) {
	runCases(t, model, engine.Config{MaxPending: seamLimit, MaxInbound: seamLimit}, OffloadCases())
}

// offloadCfg is the configuration of the cases that start their own
// server.
func offloadCfg(cfg engine.Config) engine.Config {
	cfg.App = "offload"
	return cfg
}

// dialOffload connects to an OffloadProbe server and reads its hello.
func dialOffload(t *testing.T, s *Server) *testkit.Client {
	t.Helper()
	c := dialLines(t, s)
	c.Next("hello")
	return c
}

// writeBytes writes p one byte per write.
func writeBytes(t *testing.T, c *testkit.Client, p string) {
	t.Helper()
	for i := range len(p) {
		if err := c.Write([]byte{p[i]}); err != nil {
			t.Fatalf("byte %d: %v", i, err)
		}
	}
}

// control is the test's end of the functions' control connections, and
// of Closed's reports: a loopback listener.
type control struct {
	ln *net.TCPListener
}

func listenControl(t *testing.T) *control {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &control{ln: ln.(*net.TCPListener)}
}

func (c *control) addr() string { return c.ln.Addr().String() }

// accept waits for the next connection: a function that has started, or
// a report.
func (c *control) accept(t *testing.T) *testkit.Client {
	t.Helper()
	c.ln.SetDeadline(time.Now().Add(ioTimeout))
	conn, err := c.ln.Accept()
	if err != nil {
		t.Fatalf("waiting for the server to dial %s: %v", c.addr(), err)
	}
	return testkit.NewClient(t, conn, frame.Line)
}

// expectReport accepts Closed's report and checks it says Closed ran once
// with no function running.
func (c *control) expectReport(t *testing.T) {
	t.Helper()
	c.accept(t).Next("closed 1 false")
}

// expectNoMore checks that no connection waits, once the server has
// stopped: Closed reported only once.
func (c *control) expectNoMore(t *testing.T) {
	t.Helper()
	c.ln.SetDeadline(time.Now())
	if conn, err := c.ln.Accept(); err == nil {
		line, _ := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		t.Fatalf("another report after the first: %q", line)
	}
}

// offloadOrder sends requests, every third offloaded, in one write and
// then a byte per write: the replies come in request order.
func offloadOrder(t *testing.T, s *Server) {
	for _, n := range []int{150, 40} {
		var req strings.Builder
		var want []string
		for i := range n {
			verb := "e"
			if i%3 == 0 {
				verb = "q"
			}
			fmt.Fprintf(&req, "%s %d\n", verb, i)
			want = append(want, strconv.Itoa(i))
		}
		c := dialOffload(t, s)
		if n == 40 {
			writeBytes(t, c, req.String())
		} else if err := c.Write([]byte(req.String())); err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			c.Next(w)
		}
		c.Close()
	}
	checkStats(t, s, "every offloaded function counted", func(st engine.Stats) bool {
		return st.Offloads >= 2+50+14 // the hellos, and every third request
	})
}

// offloadTrickle sends requests a byte at a time while a function runs:
// they wait for it, and their replies follow its own.
func offloadTrickle(t *testing.T, s *Server) {
	ctl := listenControl(t)
	c := dialOffload(t, s)
	c.MustSend("w " + ctl.addr())
	f := ctl.accept(t) // the function runs
	var req strings.Builder
	for i := range 30 {
		fmt.Fprintf(&req, "e %d\n", i)
	}
	writeBytes(t, c, req.String())
	f.Call("say done", "ok")
	f.MustSend("ret")
	c.Next("done")
	for i := range 30 {
		c.Next(strconv.Itoa(i))
	}
}

// offloadPastInbound sends eight times MaxInbound while a function runs:
// reading pauses (the connection is not closed for it), and after the
// function every request is answered in order.
func offloadPastInbound(t *testing.T, s *Server) {
	ctl := listenControl(t)
	c := dialOffload(t, s)
	c.MustSend("w " + ctl.addr())
	f := ctl.accept(t)
	text := strings.Repeat("a", 1000)
	n := 8 * s.Config.MaxInbound / (len(text) + 3)
	var sent atomic.Int64
	wrote := make(chan error, 1)
	go func() {
		for range n {
			if err := c.Send("e " + text); err != nil {
				wrote <- err
				return
			}
			sent.Add(int64(len(text) + 3))
		}
		wrote <- nil
	}()
	// More than MaxInbound is on its way: the server holds what it read
	// of it for after the function, and the rest waits in the socket.
	testkit.Eventually(t, ioTimeout, "more than MaxInbound sent while the function runs", func() error {
		if got := sent.Load(); got <= int64(s.Config.MaxInbound) {
			return fmt.Errorf("sent %d bytes", got)
		}
		return nil
	})
	f.Call("say done", "ok")
	f.MustSend("ret")
	c.Next("done")
	for range n {
		c.Next(text)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}

// runReported connects to s, asks for Closed's report, and offloads a
// function the test controls. It returns the client, the function's
// control connection, and where the report comes.
func runReported(t *testing.T, s *Server) (c, f *testkit.Client, reports *control) {
	t.Helper()
	ctl, reports := listenControl(t), listenControl(t)
	c = dialOffload(t, s)
	c.MustSend("report "+reports.addr(), "w "+ctl.addr())
	return c, ctl.accept(t), reports
}

// expectOneReport checks that Closed reported once, after the function.
func expectOneReport(t *testing.T, s *Server, reports *control) {
	t.Helper()
	reports.expectReport(t)
	s.Stop(t)
	reports.expectNoMore(t)
}

// offloadCloseFromFunction closes the connection from its running
// function: writes fail from then on, and Closed comes once, after the
// function returns.
func offloadCloseFromFunction(t *testing.T, s *Server) {
	c, f, reports := runReported(t, s)
	f.Call("close", "ok")
	f.Call("say late", "err "+handler.ErrClosed.Error())
	f.MustSend("ret")
	c.End()
	expectOneReport(t, s, reports)
}

// offloadPeerReset resets the connection from the client while its
// function runs: Closed comes once, after the function returns. (A loop
// notices the reset at once, a blocking model after the function.)
func offloadPeerReset(t *testing.T, s *Server) {
	c, f, reports := runReported(t, s)
	c.Conn().(*net.TCPConn).SetLinger(0)
	c.Close() // a reset
	f.MustSend("ret")
	expectOneReport(t, s, reports)
}

// offloadShutdownWaits shuts the server down while a function runs: the
// shutdown waits for it, and what it writes goes out before the farewell.
func offloadShutdownWaits(t *testing.T, s *Server) {
	ctl := listenControl(t)
	c := dialOffload(t, s)
	c.MustSend("w " + ctl.addr())
	f := ctl.accept(t)
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	// Shutdown has begun once the server refuses new connections. A
	// process model's parent may hold its listening socket until its
	// children have ended (prefork): there the function is let go at
	// once, and the order is all that is checked. The children run the
	// blocking models' code, whose wait the other models check.
	if s.Model.Child == nil {
		testkit.Eventually(t, ioTimeout, "the server refuses connections", func() error {
			if nc, err := net.Dial("tcp", s.Addr().String()); err == nil {
				nc.Close()
				return errors.New("it still accepts them")
			}
			return nil
		})
	}
	f.Call("say late", "ok")
	f.MustSend("ret")
	c.End("late", "BYE "+handler.ErrShutdown.Error())
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	s.awaitServe(t)
}

// offloadShutdownCut shuts the server down with a 300 ms deadline while a
// function runs and stays running: Shutdown ends at the deadline and
// reports the drain cut short; the function finishes later, and Closed
// follows it.
func offloadShutdownCut(t *testing.T, s *Server) {
	s = Start(t, s.Model.Name, OffloadProbe(), offloadCfg(engine.Config{DrainTimeout: time.Minute}))
	_, f, reports := runReported(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.Shutdown(ctx)
	if took := time.Since(start); took > stuckShutdownBound {
		t.Errorf("Shutdown took %v with a function running: want it to end at its 300 ms deadline", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown returned %v: want a drain cut short by its deadline", err)
	}
	f.MustSend("ret")
	if s.Model.Child == nil { // a process model's child was killed at the deadline
		reports.expectReport(t)
	}
	s.awaitServe(t)
}

// offloadPanic makes a function panic: its connection closes with the
// panic as the reason, the server serves on, and counts it.
func offloadPanic(t *testing.T, s *Server) {
	c := dialOffload(t, s)
	c.MustSend("p")
	c.End("BYE " + handler.ErrOffloadPanic.Error() + ": probe panic")
	dialOffload(t, s).Call("e still here", "still here")
	checkStats(t, s, "one offloaded function panicked", func(st engine.Stats) bool { return st.OffloadPanics == 1 })
}
