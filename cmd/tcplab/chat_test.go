package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/internal/testkit"
)

// dialPeer connects a raw chat client to addr and reads its HELLO.
func dialPeer(t *testing.T, addr string, kind frame.Kind) *testkit.Client {
	t.Helper()
	p, err := testkit.Dialer{}.Hello(t, addr, kind)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitFor waits until b matches re.
func waitFor(t *testing.T, b interface{ String() string }, re string) {
	t.Helper()
	rx := regexp.MustCompile(re)
	testkit.Eventually(t, testkit.Bound, fmt.Sprintf("the output matches %q", re), func() error {
		if !rx.MatchString(b.String()) {
			return fmt.Errorf("the output:\n%s", b.String())
		}
		return nil
	})
}

// TestChatClientBothFramings drives `tcplab chat` through its standard
// input against a real chat server, in each framing, and checks what a
// second, raw client sees and what the interactive client prints.
func TestChatClientBothFramings(t *testing.T) {
	for _, kind := range []frame.Kind{frame.Length, frame.Line} {
		t.Run(string(kind), func(t *testing.T) {
			s := serve(t, "--app", "chat", "--framing", string(kind), "--addr", "127.0.0.1:0")
			addr := s.Addr
			bob := dialPeer(t, addr, kind)
			bob.MustSend("/nick bob")
			bob.Next("OK nick bob")
			bob.MustSend("/join dev")
			bob.Next("OK join dev")

			stdin, typing := io.Pipe()
			out := &syncBuffer{}
			var errb syncBuffer
			root := newRoot(out, &errb)
			root.SetIn(stdin)
			root.SetArgs([]string{"chat", "--addr", addr, "--nick", "alice", "--room", "dev", "--framing", string(kind)})
			done := make(chan error, 1)
			go func() { done <- root.ExecuteContext(context.Background()) }()

			waitFor(t, out, `\*\*\* connected to `+regexp.QuoteMeta(addr)+` as alice in dev`)
			bob.Next("JOIN dev alice")
			for _, l := range []string{"hello bob", "", "//slash", "/who", "/msg bob psst", "/frob", "/ping", "/rooms"} {
				fmt.Fprintln(typing, l)
			}
			bob.Next("MSG dev alice hello bob")
			bob.Next("MSG dev alice /slash")
			bob.Next("PRIV alice psst")
			// Replies are worded for people, not shown raw.
			waitFor(t, out, `(?m)^members: alice bob\n\*\*\* private message sent\nerror: unknown-command /frob\npong \(\d+\.\d ms\)\nrooms: dev \(2\)\n`)
			bob.MustSend("hi alice")
			waitFor(t, out, `(?m)^\[dev\] <bob> hi alice$`)
			bob.MustSend("/msg alice back")
			bob.Next("OK msg")
			waitFor(t, out, `(?m)^\[private\] <bob> back$`)
			fmt.Fprintln(typing, "/help")
			waitFor(t, out, `(?m)^  /msg NICK TEXT`)

			typing.Close() // end of input: the client says /quit and exits 0
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("client: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("client did not exit within 15s of the end of its input")
			}
			if !strings.HasSuffix(out.String(), "*** disconnected: quit\n") {
				t.Errorf("output does not end with the BYE quit:\n%s", out)
			}
			bob.Next("LEAVE dev alice")
			stop(t, s)
		})
	}
}

// TestChatClientCtrlC runs the real binary and interrupts it: it leaves
// the chat and exits 0.
func TestChatClientCtrlC(t *testing.T) {
	addr := serve(t, "--app", "chat", "--addr", "127.0.0.1:0").Addr
	bob := dialPeer(t, addr, frame.Length)

	cmd := exec.Command(os.Args[0], "chat", "--addr", addr, "--nick", "carol")
	cmd.Env = append(os.Environ(), "TCPLAB_TEST_MAIN=1")
	stdin, err := cmd.StdinPipe() // kept open: the client waits for input
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	lines := bufio.NewScanner(stdout)
	for lines.Scan() && !strings.HasPrefix(lines.Text(), "*** connected to") {
	}
	bob.NextPrefix("JOIN lobby guest-")
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, stdout)
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Fatalf("after Ctrl-C: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("still running 15s after Ctrl-C")
	}
	bob.Next("LEAVE lobby carol")
}

func TestChatClientBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"chat", "--nick", "bad name"},
		{"chat", "--room", "no/slashes"},
		{"chat", "--framing", "xml"},
		{"chat", "--max-frame", "10"},
		{"chat", "extra"},
	} {
		code, _, stderr := runCmd(t, args...)
		if code != 2 || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "tcplab: ") {
			t.Errorf("%q: exit %d, stderr %q; want 2 and one line", args, code, stderr)
		}
	}
	// Nobody listening: a one-line error, exit 1.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	code, _, stderr := runCmd(t, "chat", "--addr", addr)
	if code != 1 || !strings.HasPrefix(stderr, "tcplab: connect to "+addr) || strings.Count(stderr, "\n") != 1 {
		t.Errorf("no server: exit %d, stderr %q", code, stderr)
	}
}

// TestChatClientWrongFraming: `tcplab chat` against a server of the other
// framing, or one that is not a chat server, says so in one line at once
// (rather than "frame too large: length header says 1212501068 bytes",
// "HELL", or a wait for a newline a length server never sends).
func TestChatClientWrongFraming(t *testing.T) {
	for _, c := range []struct{ serve, client, want string }{
		{"line", "length", "tcplab: waiting for HELLO: the server speaks line framing: try --framing line\n"},
		{"length", "line", "tcplab: waiting for HELLO: the server speaks length framing: try --framing length\n"},
	} {
		s := serve(t, "--app", "chat", "--framing", c.serve, "--addr", "127.0.0.1:0")
		code, _, stderr := runCmd(t, "chat", "--addr", s.Addr, "--framing", c.client)
		if code != 1 || stderr != c.want {
			t.Errorf("--framing %s against a %s server: exit %d, stderr %q; want 1 and %q", c.client, c.serve, code, stderr, c.want)
		}
		stop(t, s)
	}
	s := serve(t, "--app", "echo", "--addr", "127.0.0.1:0")
	code, _, stderr := runCmd(t, "chat", "--addr", s.Addr, "--timeout", "200ms")
	if want := "tcplab: waiting for HELLO: the server sent nothing within 200ms; is it a chat server (serve --app chat)?\n"; code != 1 || stderr != want {
		t.Errorf("against an echo server: exit %d, stderr %q; want 1 and %q", code, stderr, want)
	}
}

func TestChatClientNickTaken(t *testing.T) {
	addr := serve(t, "--app", "chat", "--addr", "127.0.0.1:0").Addr
	bob := dialPeer(t, addr, frame.Length)
	bob.MustSend("/nick bob")
	bob.Next("OK nick bob")
	code, _, stderr := runCmd(t, "chat", "--addr", addr, "--nick", "bob")
	if code != 1 || stderr != "tcplab: /nick bob: ERR nick-taken bob\n" {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

func TestServeChatBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--framing", "xml"},
		{"--max-frame", "0"},
		{"--max-frame", "3000000"}, // over --max-inbound
		{"--max-pending", "1000"},  // no room for a server frame
		{"--max-conns", "0"},
		{"--msg-rate", "-1"},
		{"--msg-burst", "-1"},
		{"--idle-timeout", "-1s"},
		{"--presence-limit", "-1"},
		{"--model", "prefork", "--bus", "local"}, // each process would be its own chat
		{"--model", "fork", "--bus", "local"},
		{"--bus", "carrier-pigeon"},
		{"--bus", "nats://127.0.0.1:4222", "--bus-replicas", "0"},
	} {
		args = append([]string{"serve", "--app", "chat", "--addr", "127.0.0.1:0"}, args...)
		code, _, stderr := runCmd(t, args...)
		if code != 2 || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "tcplab: ") {
			t.Errorf("%q: exit %d, stderr %q; want 2 and one line", args, code, stderr)
		}
	}
}

// TestServeChatSmallFrameNamesTheFlag: a --max-frame under chat's
// minimum is refused naming --max-frame, not --max-pending.
func TestServeChatSmallFrameNamesTheFlag(t *testing.T) {
	code, _, stderr := runCmd(t, "serve", "--app", "chat", "--addr", "127.0.0.1:0", "--max-frame", "100")
	if code != 2 || !strings.Contains(stderr, "--max-frame 100") {
		t.Errorf("exit %d, stderr %q; want 2 naming --max-frame 100", code, stderr)
	}
}

// TestServeChatUnreachableBusExits1: a well-formed --bus that cannot be
// reached (nothing listens on 127.0.0.1:1) is a runtime failure, exit 1
// with one line, not bad usage.
func TestServeChatUnreachableBusExits1(t *testing.T) {
	args := []string{"serve", "--app", "chat", "--addr", "127.0.0.1:0", "--bus", "nats://127.0.0.1:1"}
	code, _, stderr := runCmd(t, args...)
	if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "127.0.0.1:1") {
		t.Errorf("%q: exit %d, stderr %q; want 1 and one line naming the bus", args, code, stderr)
	}
}

func TestServeWarnsAboutChatFlagForEcho(t *testing.T) {
	s := serve(t, "--app", "echo", "--addr", "127.0.0.1:0", "--framing", "line")
	echoOnce(t, s.Addr, "x")
	stop(t, s)
	if !regexp.MustCompile(`level=WARN msg="flag does not apply to this app; ignored" flag=--framing app=echo`).MatchString(s.Stderr()) {
		t.Errorf("no warning about --framing with --app echo:\n%s", s.Stderr())
	}
}

// TestChatShutdownDeliversThenSaysBye stops a chat server with SIGTERM: a
// message the server read reaches the other client before its BYE
// shutting-down.
func TestChatShutdownDeliversThenSaysBye(t *testing.T) {
	s := serve(t, "--app", "chat", "--framing", "line", "--addr", "127.0.0.1:0")
	a := dialPeer(t, s.Addr, frame.Line)
	b := dialPeer(t, s.Addr, frame.Line)
	a.NextPrefix("JOIN lobby guest-")
	for i := range 100 {
		b.MustSend(fmt.Sprintf("message %d", i))
	}
	b.MustSend("/ping")
	b.Next("PONG") // all 100 were read
	stop(t, s)
	for i := range 100 {
		a.Next(fmt.Sprintf("MSG lobby guest-2 message %d", i))
	}
	a.End("BYE shutting-down")
}

func TestFormatChatFrame(t *testing.T) {
	for in, want := range map[string]string{
		"MSG dev bob hi  there": "[dev] <bob> hi  there",
		"PRIV bob psst":         "[private] <bob> psst",
		"JOIN dev bob":          "*** bob joined dev",
		"LEAVE dev bob":         "*** bob left dev",
		"OK who a b":            "members: a b",
		"OK rooms a:1 b:20 ...": "rooms: a (1), b (20), ...",
		"OK nick bob":           "*** you are now bob",
		"OK join dev":           "*** you are now in dev",
		"OK msg":                "*** private message sent",
		"OK help /nick /quit":   "server commands: /nick /quit",
		"OK frob x":             "ok: frob x",
		"PONG":                  "pong",
		"ERR usage /nick NAME":  "error: usage /nick NAME",
		"NOTICE bus-up back":    "*** notice: bus-up back",
		"MSG dev bob \x1b[2J":   `[dev] <bob> \x1b[2J`,
		"MSG":                   "[] <> ",
		"BYE quit":              "*** disconnected: quit",
	} {
		if got := formatChatFrame(in); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}

// FuzzFormatChatFrame: whatever a server sends, the client prints one line
// of valid UTF-8 with no control characters but tabs.
func FuzzFormatChatFrame(f *testing.F) {
	for _, s := range []string{"MSG a b c", "PRIV x", "JOIN", "LEAVE a", "\x1b]0;title\x07", "a\nb", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := formatChatFrame(in)
		if !utf8.ValidString(out) {
			t.Fatalf("%q: output %q is not UTF-8", in, out)
		}
		for _, r := range out {
			if r != '\t' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0)) {
				t.Fatalf("%q: output %q holds control character %U", in, out, r)
			}
		}
	})
}

// TestServeChatFlagsReachTheServer checks that each chat flag of serve
// takes effect, over real TCP.
func TestServeChatFlagsReachTheServer(t *testing.T) {
	addr := serve(t, "--app", "chat", "--addr", "127.0.0.1:0", "--framing", "line",
		"--max-conns", "1", "--msg-rate", "0.001", "--msg-burst", "3", "--idle-timeout", "500ms",
		"--max-frame", "2000", "--max-pending", "4096").Addr
	a := dialPeer(t, addr, frame.Line)
	// --max-pending 4096 makes the server frame limit 1024 bytes.
	a.MustSend(strings.Repeat("x", 1024))
	a.Next("ERR too-long the message would make a 1042-byte frame; the limit is 1024")
	// --max-conns 1.
	testkit.Dial(t, addr, frame.Line).End("ERR server-full too many connections", "BYE server-full")
	// --msg-burst 3 (the long line above took one token).
	a.MustSend("/ping")
	a.MustSend("/ping")
	a.MustSend("/ping")
	a.Next("PONG")
	a.Next("PONG")
	a.Next("ERR rate-limited message dropped")
	// --idle-timeout 500ms.
	a.Next("BYE idle-timeout")
	// --max-frame 2000, once a's slot is free.
	var b *testkit.Client
	testkit.Eventually(t, testkit.Bound, "a new client is served once the idle one left", func() error {
		var err error
		b, err = testkit.Dialer{}.Hello(t, addr, frame.Line)
		return err
	})
	b.MustSend(strings.Repeat("y", 2001))
	b.Next("ERR frame-too-large frame too large: line of 2001 bytes, max 2000")
	b.Next("BYE frame-too-large")
}
