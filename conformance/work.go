package conformance

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcplab/tcplab/engine"
	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/internal/testkit"
)

// workCase is one check of the work app (docs/work-protocol.md).
type workCase struct {
	name string
	run  func(t *testing.T, s *Server)
	// params are the app's parameters (flag values, as serve takes them);
	// the others have their defaults.
	params map[string]string
	// cfg is the server's configuration (zero: the defaults).
	cfg engine.Config
}

// workCases are the work app's checks. Each runs on every model: a model
// that serves one connection at a time serves the concurrent clients one
// after another.
func workCases() []workCase {
	small := map[string]string{"max-sha": "1000", "max-sleep": "50ms", "max-frame": "1024"}
	return []workCase{
		{name: "sha, sleep and echo answer; sha checked against a local computation", run: workVerbs},
		// The largest reply is a quarter of MaxPending: 600 bytes here.
		{name: "errors and limits get ERR and the connection stays open", run: workErrors, params: small, cfg: engine.Config{MaxPending: 2400}},
		{name: "the default limits are 1000000 rounds and 1s", run: workDefaultLimits},
		{name: "pipelined requests are answered in order", run: workPipelined, params: small},
		{name: "requests sent one byte per write are answered in order", run: workByteAtATime, params: small},
		{name: "oversize length header gets ERR frame-too-large and a close", run: workOversize, params: small},
		{name: "empty length frame gets ERR bad-frame and a close", run: workEmptyFrame},
		{name: "20 concurrent clients each get their own replies", run: workConcurrent},
		{name: "shutdown says BYE shutting-down", run: workShutdown},
	}
}

// RunWork runs the work cases against model, each on a fresh server.
func RunWork(t *testing.T, model string) {
	for _, c := range workCases() {
		t.Run(c.name, func(t *testing.T) {
			checkLeaks(t)
			cfg := c.cfg
			h := newApp(t, "work", c.params, model, &cfg) // sets cfg.App for a process model's children
			c.run(t, Start(t, model, h, cfg))
		})
	}
}

// dialWork connects a client that speaks length frames (the chat's
// framing; the calls are the same).
func dialWork(t testing.TB, s *Server) *testkit.Client {
	t.Helper()
	return testkit.Dial(t, s.Addr().String(), frame.Length)
}

// shaHex is the reference for "sha N TEXT", computed here rather than by
// package work: N rounds of SHA-256, in hex.
func shaHex(n int, text string) string {
	h := sha256.Sum256([]byte(text))
	for i := 1; i < n; i++ {
		h = sha256.Sum256(h[:])
	}
	return hex.EncodeToString(h[:])
}

func workVerbs(t *testing.T, s *Server) {
	c := dialWork(t, s)
	// sha256("abc"), as FIPS 180-2 gives it: the reference is right.
	c.Call("sha 1 abc", "OK ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
	for _, n := range []int{1, 2, 3, 1000, 54321} {
		for _, text := range []string{"x", "hello world", "  two  spaces  ", "héllo wörld ✓", strings.Repeat("z", 500)} {
			c.Call("sha "+strconv.Itoa(n)+" "+text, "OK "+shaHex(n, text))
		}
	}
	c.Call("sha 007 x", "OK "+shaHex(7, "x"))
	c.Call("echo hello", "OK hello")
	c.Call("echo  spaces kept  ", "OK  spaces kept  ")
	c.Call("echo héllo ✓", "OK héllo ✓")
	c.Call("sleep 0", "OK slept 0")
	start := time.Now()
	c.Call("sleep 20000", "OK slept 20000")
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("sleep 20000 answered after %v: it did not block for 20 ms", d)
	}
}

func workErrors(t *testing.T, s *Server) {
	c := dialWork(t, s)
	usageSha := func(got string) string {
		return "ERR usage sha N: N is a whole number from 1 to 1000, got " + got
	}
	usageSleep := func(got string) string {
		return "ERR usage sleep US: US is a whole number from 0 to 50000, got " + got
	}
	for _, x := range []struct{ req, want string }{
		{"sha 1000 x", "OK " + shaHex(1000, "x")},
		{"sha 1001 x", "ERR too-much sha 1001: the most is 1000"},
		{"sha 99999999999999999999999999 x", "ERR too-much sha 99999999999999999999999999: the most is 1000"},
		{"sha 0 x", usageSha("0")},
		{"sha -1 x", usageSha("-1")},
		{"sha +1 x", usageSha("+1")},
		{"sha 1x x", usageSha("1x")},
		{"sha  1 x", usageSha("")},
		{"sha 5", "ERR usage sha N TEXT"},
		{"sha 5 ", "ERR usage sha N TEXT"},
		{"sha", "ERR usage sha N TEXT"},
		{"sleep 50000", "OK slept 50000"},
		{"sleep 50001", "ERR too-much sleep 50001: the most is 50000"},
		{"sleep", "ERR usage sleep US"},
		{"sleep ", usageSleep("")},
		{"sleep 1 2", usageSleep("1 2")},
		{"sleep -5", usageSleep("-5")},
		{"sleep 1.5", usageSleep("1.5")},
		{"echo", "ERR usage echo TEXT"},
		{"echo ", "ERR usage echo TEXT"},
		{"echo " + strings.Repeat("e", 597), "OK " + strings.Repeat("e", 597)},
		{"echo " + strings.Repeat("e", 598), "ERR too-much echo of 598 bytes: the reply would be 601 bytes, the most is 600"},
		{"SHA 1 x", "ERR unknown-command SHA"},
		{"ping", "ERR unknown-command ping"},
		{"\x1b[2J", "ERR unknown-command ?[2J"}, // no escape sequence quoted back
		{"sleep \x1b[31m", usageSleep("?[31m")},
		{" sha 1 x", "ERR unknown-command "},
		{"echo \xff\xfe", "ERR bad-utf8 frame is not valid UTF-8"},
		{"\xc3", "ERR bad-utf8 frame is not valid UTF-8"},
		{"echo still here", "OK still here"},
	} {
		c.Call(x.req, x.want)
	}
}

func workDefaultLimits(t *testing.T, s *Server) {
	c := dialWork(t, s)
	c.Call("sha 1000001 x", "ERR too-much sha 1000001: the most is 1000000")
	c.Call("sleep 1000001", "ERR too-much sleep 1000001: the most is 1000000")
	c.Call("echo ok", "OK ok")
}

// workScript is a mix of every verb and some errors, with the replies
// due, for the ordering cases (under the small limits).
func workScript() (reqs, replies []string) {
	for i := range 60 {
		text := "t" + strconv.Itoa(i)
		switch i % 6 {
		case 0:
			reqs, replies = append(reqs, "sha "+strconv.Itoa(1+i*13)+" "+text), append(replies, "OK "+shaHex(1+i*13, text))
		case 1:
			reqs, replies = append(reqs, "echo "+text), append(replies, "OK "+text)
		case 2:
			reqs, replies = append(reqs, "sleep "+strconv.Itoa(i*10)), append(replies, "OK slept "+strconv.Itoa(i*10))
		case 3:
			reqs, replies = append(reqs, "sha 1001 "+text), append(replies, "ERR too-much sha 1001: the most is 1000")
		case 4:
			reqs, replies = append(reqs, "nope "+text), append(replies, "ERR unknown-command nope")
		case 5:
			reqs, replies = append(reqs, "sha "+strconv.Itoa(i)+" "+strings.Repeat(text, 20)), append(replies, "OK "+shaHex(i, strings.Repeat(text, 20)))
		}
	}
	return reqs, replies
}

func workPipelined(t *testing.T, s *Server) {
	c := dialWork(t, s)
	reqs, replies := workScript()
	c.MustSend(reqs...) // one write
	for _, want := range replies {
		c.Next(want)
	}
}

func workByteAtATime(t *testing.T, s *Server) {
	c := dialWork(t, s)
	reqs, replies := workScript()
	var b []byte
	for _, r := range reqs {
		b, _ = frame.Append(b, frame.Length, 0, []byte(r))
	}
	done := make(chan error, 1)
	go func() {
		for i := range b {
			if _, err := c.Conn().Write(b[i : i+1]); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for _, want := range replies {
		c.Next(want)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func workOversize(t *testing.T, s *Server) {
	c := dialWork(t, s)
	c.Call("echo before", "OK before")
	// The header alone must get the answer: no body follows it.
	if _, err := c.Conn().Write(binary.BigEndian.AppendUint32(nil, 1025)); err != nil {
		t.Fatal(err)
	}
	c.NextPrefix("ERR frame-too-large ")
	c.End("BYE frame-too-large")
}

func workEmptyFrame(t *testing.T, s *Server) {
	c := dialWork(t, s)
	if _, err := c.Conn().Write([]byte{0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	c.NextPrefix("ERR bad-frame ")
	c.End("BYE bad-frame")
}

// workConcurrent runs 20 clients at once, each with its own texts, and
// checks every reply. Where the model serves fewer at once, the others
// wait their turn: each client leaves when done.
func workConcurrent(t *testing.T, s *Server) {
	const clients, requests = 20, 15
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			c, err := testkit.Dialer{}.Dial(t, s.Addr().String(), frame.Length)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for j := range requests {
				text := fmt.Sprintf("client %d request %d", i, j)
				req, want := "echo "+text, "OK "+text
				switch j % 3 {
				case 0:
					req, want = fmt.Sprintf("sha %d %s", 100+i, text), "OK "+shaHex(100+i, text)
				case 1:
					req, want = "sleep 1000", "OK slept 1000"
				}
				if err := c.Send(req); err != nil {
					errs <- err
					return
				}
				got, err := c.Read()
				if err != nil || got != want {
					errs <- fmt.Errorf("client %d, %q: got (%q, %v), want %q", i, req, got, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func workShutdown(t *testing.T, s *Server) {
	c := dialWork(t, s)
	c.Call("echo hi", "OK hi")
	s.Stop(t)
	c.End("BYE shutting-down")
}
