package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/tcplab/tcplab/app/chat"
	"github.com/tcplab/tcplab/frame"
)

// chatClient holds the chat command's flags.
type chatClient struct {
	addr     string
	nick     string
	room     string
	framing  string
	maxFrame int
	timeout  time.Duration
	tls      tlsClientFlags
}

const chatHelp = `commands (sent to the server):
  /nick NAME       change your nick
  /join ROOM       leave your room for ROOM
  /rooms           list the rooms and their member counts
  /who             list the members of your room
  /msg NICK TEXT   send NICK a private message
  /ping            the server answers: pong, and the round trip
  /quit            leave (so do Ctrl-D and Ctrl-C)
  //text           say "/text" to the room
anything else is said to your room; /help shows this`

func newChatCmd() *cobra.Command {
	o := &chatClient{}
	cmd := &cobra.Command{
		Use:   "chat",
		Short: "Chat interactively with a tcplab chat server",
		Long: `Chat interactively with a tcplab chat server (serve --app chat).

Each line read from standard input is sent as one frame; what the server
sends is printed, one line per frame. It exits 0 on end of input (Ctrl-D),
Ctrl-C, /quit, or when the server says BYE.

` + chatHelp,
		Example: "  tcplab chat --addr 127.0.0.1:7000 --nick alice --room dev\n  tcplab chat --nick bob --framing line\n  tcplab chat --tls --tls-ca ca.pem --addr chat.example.org:7000",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.check(); err != nil {
				return usageError{err}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return o.run(ctx, cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", "127.0.0.1:7000", "the chat server's address")
	f.StringVar(&o.nick, "nick", "", "your nick: 1 to 32 of A-Z a-z 0-9 _ - (default: the guest nick the server gives)")
	f.StringVar(&o.room, "room", "", "room to join after connecting (default: lobby)")
	f.StringVar(&o.framing, "framing", "length", "the server's framing: length or line")
	f.IntVar(&o.maxFrame, "max-frame", frame.DefaultMax, "largest frame to send or accept, in bytes")
	f.DurationVar(&o.timeout, "timeout", 10*time.Second, "how long to wait to connect and for each reply while joining")
	addTLSClientFlags(f, &o.tls)
	return cmd
}

func (o *chatClient) check() error {
	_, port, err := net.SplitHostPort(o.addr)
	if err != nil {
		return fmt.Errorf("--addr %q: %w", o.addr, err)
	}
	if err := checkPort("--addr", o.addr, port, false); err != nil {
		return err
	}
	if _, err := frame.ParseKind(o.framing); err != nil {
		return fmt.Errorf("--framing: %w", err)
	}
	if o.nick != "" && !chat.ValidNick([]byte(o.nick)) {
		return fmt.Errorf("--nick %q: want 1 to %d of A-Z a-z 0-9 _ -", o.nick, chat.MaxNick)
	}
	if o.room != "" && !chat.ValidRoom([]byte(o.room)) {
		return fmt.Errorf("--room %q: want 1 to %d of A-Z a-z 0-9 _ -", o.room, chat.MaxRoom)
	}
	if o.maxFrame < 64 {
		return fmt.Errorf("--max-frame %d: want at least 64", o.maxFrame)
	}
	if o.timeout <= 0 {
		return fmt.Errorf("--timeout %v: must be positive", o.timeout)
	}
	return o.tls.check()
}

// chatSession is a connected client.
type chatSession struct {
	o      *chatClient
	kind   frame.Kind
	conn   net.Conn
	out    io.Writer
	frames chan string // closed when the connection ends
	done   chan struct{}
	rerr   error // why frames closed; read after it is closed
	bye    string
	// pings are the send times of the /pings not answered yet: the server
	// answers them in order.
	pings []time.Time
}

func (o *chatClient) run(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	conn, err := o.tls.dial(ctx, o.addr, o.timeout, stdout)
	if err != nil {
		return err
	}
	s := &chatSession{o: o, kind: frame.Kind(o.framing), conn: conn, out: stdout,
		frames: make(chan string), done: make(chan struct{})}
	defer func() {
		close(s.done)
		conn.Close()
	}()
	in, err := s.greeted()
	if err != nil {
		return err
	}
	r, err := frame.NewReader(in, s.kind, o.maxFrame)
	if err != nil {
		return err
	}
	go s.readFrames(r)

	if err := s.join(); err != nil {
		return err
	}
	lines := make(chan string)
	go readLines(stdin, lines, s.done)
	for {
		select {
		case <-ctx.Done():
			return s.quit()
		case line, ok := <-lines:
			if !ok {
				return s.quit()
			}
			if quit, err := s.command(line); quit || err != nil {
				return err
			}
		case f, ok := <-s.frames:
			if !ok {
				return s.ended()
			}
			s.print(f)
		}
	}
}

// greeted waits for the server's first bytes, within the timeout, and
// checks that they are a chat greeting in the client's framing. It
// returns the connection's input, those bytes first.
func (s *chatSession) greeted() (io.Reader, error) {
	s.conn.SetReadDeadline(time.Now().Add(s.o.timeout))
	in, err := chat.SniffGreeting(s.conn, s.kind)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, fmt.Errorf("waiting for HELLO: the server sent nothing within %v; is it a chat server (serve --app chat)?", s.o.timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("waiting for HELLO: %w", err)
	}
	s.conn.SetReadDeadline(time.Time{})
	return in, nil
}

// readFrames passes the server's frames to s.frames until the connection
// ends.
func (s *chatSession) readFrames(r *frame.Reader) {
	defer close(s.frames)
	for {
		p, err := r.Next()
		if err != nil {
			s.rerr = err
			return
		}
		select {
		case s.frames <- string(p):
		case <-s.done:
			return
		}
	}
}

// readLines passes stdin's lines, without their line ends, to lines and
// closes it at the end of input.
func readLines(stdin io.Reader, lines chan<- string, done <-chan struct{}) {
	defer close(lines)
	br := bufio.NewReader(stdin)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			select {
			case lines <- strings.TrimRight(line, "\r\n"):
			case <-done:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// join waits for HELLO and sets the nick and room.
func (s *chatSession) join() error {
	hello, err := s.await(func(f string) bool { return true })
	if err != nil {
		return fmt.Errorf("waiting for HELLO: %w", err)
	}
	if !strings.HasPrefix(hello, "HELLO tcplab 1 ") {
		s.print(hello)
		return fmt.Errorf("the server did not greet with HELLO tcplab 1: %q", hello)
	}
	nick := strings.TrimPrefix(hello, "HELLO tcplab 1 ")
	if s.o.nick != "" && s.o.nick != nick {
		if err := s.call("/nick "+s.o.nick, "OK nick "+s.o.nick); err != nil {
			return err
		}
		nick = s.o.nick
	}
	room := chat.Lobby
	if s.o.room != "" && s.o.room != room {
		if err := s.call("/join "+s.o.room, "OK join "+s.o.room); err != nil {
			return err
		}
		room = s.o.room
	}
	fmt.Fprintf(s.out, "*** connected to %s as %s in %s; /help for commands\n", s.o.addr, nick, room)
	return nil
}

// call sends a command and waits for its reply, printing what else
// arrives meanwhile. An ERR reply is an error.
func (s *chatSession) call(cmd, want string) error {
	if err := s.send(cmd); err != nil {
		return err
	}
	reply, err := s.await(func(f string) bool { return f == want || strings.HasPrefix(f, "ERR ") })
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if reply != want {
		return fmt.Errorf("%s: %s", cmd, reply)
	}
	return nil
}

// await returns the first frame that match accepts, printing the others,
// within the timeout.
func (s *chatSession) await(match func(string) bool) (string, error) {
	timer := time.NewTimer(s.o.timeout)
	defer timer.Stop()
	for {
		select {
		case f, ok := <-s.frames:
			if !ok {
				return "", s.ended()
			}
			if match(f) {
				return f, nil
			}
			s.print(f)
		case <-timer.C:
			return "", fmt.Errorf("no reply within %v", s.o.timeout)
		}
	}
}

// command handles one line of input. It reports whether the client should
// exit.
func (s *chatSession) command(line string) (quit bool, err error) {
	switch line {
	case "":
		return false, nil
	case "/help":
		fmt.Fprintln(s.out, chatHelp)
		return false, nil
	case "/quit":
		return true, s.quit()
	}
	if err := s.send(line); err != nil {
		if errors.Is(err, frame.ErrTooLarge) {
			fmt.Fprintf(s.out, "*** not sent: %v\n", err)
			return false, nil
		}
		return true, err
	}
	if line == "/ping" {
		s.pings = append(s.pings, time.Now())
	}
	return false, nil
}

func (s *chatSession) send(payload string) error {
	b, err := frame.Append(nil, s.kind, s.o.maxFrame, []byte(payload))
	if err != nil {
		return err
	}
	s.conn.SetWriteDeadline(time.Now().Add(s.o.timeout))
	if _, err := s.conn.Write(b); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

// quit says /quit and waits, briefly, for the server's BYE.
func (s *chatSession) quit() error {
	if s.bye != "" {
		return nil
	}
	if err := s.send("/quit"); err != nil {
		return nil // the connection is gone already: nothing to say goodbye to
	}
	if bye, err := s.await(func(f string) bool { return strings.HasPrefix(f, "BYE ") }); err == nil {
		s.print(bye)
	}
	return nil
}

// ended explains the end of the connection: fine after a BYE, an error
// otherwise.
func (s *chatSession) ended() error {
	if s.bye != "" {
		return nil
	}
	if errors.Is(s.rerr, io.EOF) {
		return errors.New("the server closed the connection")
	}
	return fmt.Errorf("connection lost: %w", s.rerr)
}

// print shows one frame from the server.
func (s *chatSession) print(f string) {
	if reason, ok := strings.CutPrefix(f, "BYE "); ok {
		s.bye = reason
	}
	out := formatChatFrame(f)
	switch {
	case f == "PONG" && len(s.pings) > 0:
		out = fmt.Sprintf("%s (%.1f ms)", out, float64(time.Since(s.pings[0]).Microseconds())/1000)
		s.pings = s.pings[1:]
	case strings.HasPrefix(f, "ERR "+chat.CodeRateLimited+" "):
		s.pings = nil // one of them may be the frame dropped: time no PONG against the wrong /ping
	}
	fmt.Fprintln(s.out, out)
}

// formatChatFrame renders a server frame for people: room and private
// messages, presence and the replies to commands get a readable form.
// Control characters are shown escaped, so a frame cannot drive the
// terminal.
func formatChatFrame(f string) string {
	verb, rest, _ := strings.Cut(f, " ")
	switch verb {
	case "OK":
		f = formatReply(rest)
	case "PONG":
		f = "pong"
	case "ERR":
		f = "error: " + rest
	case "BYE":
		f = "*** disconnected: " + rest
	case "NOTICE":
		f = "*** notice: " + rest
	case "MSG":
		room, rest, _ := strings.Cut(rest, " ")
		nick, text, _ := strings.Cut(rest, " ")
		f = fmt.Sprintf("[%s] <%s> %s", room, nick, text)
	case "PRIV":
		nick, text, _ := strings.Cut(rest, " ")
		f = fmt.Sprintf("[private] <%s> %s", nick, text)
	case "JOIN", "LEAVE":
		room, nick, _ := strings.Cut(rest, " ")
		what := "joined"
		if verb == "LEAVE" {
			what = "left"
		}
		f = fmt.Sprintf("*** %s %s %s", nick, what, room)
	}
	return escapeControls(f)
}

// formatReply renders the rest of an "OK <command> [detail]" reply.
func formatReply(rest string) string {
	cmd, detail, _ := strings.Cut(rest, " ")
	switch cmd {
	case "who":
		return "members: " + detail
	case "rooms":
		rooms := strings.Fields(detail)
		for i, r := range rooms {
			if name, n, ok := strings.Cut(r, ":"); ok {
				rooms[i] = name + " (" + n + ")"
			}
		}
		return "rooms: " + strings.Join(rooms, ", ")
	case "nick":
		return "*** you are now " + detail
	case "join":
		return "*** you are now in " + detail
	case "msg":
		return "*** private message sent"
	case "help":
		return "server commands: " + detail
	}
	return "ok: " + rest
}

// escapeControls replaces control characters (but not tabs) with Go
// escapes, and invalid UTF-8 with U+FFFD.
func escapeControls(s string) string {
	var b bytes.Buffer
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if r != '\t' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0)) {
			fmt.Fprintf(&b, "\\x%02x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
