package chat

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseCommand(t *testing.T) {
	ok := []struct {
		in         string
		op         Op
		name, text string
	}{
		{"hello", OpSay, "", "hello"},
		{" /not a command", OpSay, "", " /not a command"},
		{"//join x", OpSay, "", "/join x"},
		{"//", OpSay, "", "/"},
		{"/nick alice", OpNick, "alice", ""},
		{"/nick A-b_9", OpNick, "A-b_9", ""},
		{"/join dev", OpJoin, "dev", ""},
		{"/rooms", OpRooms, "", ""},
		{"/rooms ", OpRooms, "", ""},
		{"/who", OpWho, "", ""},
		{"/msg bob hi there ", OpMsg, "bob", "hi there "},
		{"/msg bob  two spaces", OpMsg, "bob", " two spaces"},
		{"/ping", OpPing, "", ""},
		{"/quit", OpQuit, "", ""},
		{"/help", OpHelp, "", ""},
		{"tab\there", OpSay, "", "tab\there"},
		{"/msg bob tab\there", OpMsg, "bob", "tab\there"},
		{"U+00A0\u00a0and U+2028\u2028are not controls", OpSay, "", "U+00A0\u00a0and U+2028\u2028are not controls"},
	}
	for _, c := range ok {
		cmd, err := ParseCommand([]byte(c.in))
		if err != nil || cmd.Op != c.op || string(cmd.Name) != c.name || string(cmd.Text) != c.text {
			t.Errorf("%q: got (%v %q %q, %v), want (%v %q %q)", c.in, cmd.Op, cmd.Name, cmd.Text, err, c.op, c.name, c.text)
		}
	}
	bad := []struct{ in, code, detail string }{
		{"/", CodeUnknownCommand, "/"},
		{"/ x", CodeUnknownCommand, "/"},
		{"/NICK x", CodeUnknownCommand, "/NICK"},
		{"/frob" + strings.Repeat("b", 100), CodeUnknownCommand, "/frob" + strings.Repeat("b", 56) + "..."},
		{"/nick", CodeUsage, "/nick NAME"},
		{"/nick ", CodeUsage, "/nick NAME"},
		{"/nick  bob", CodeBadNick, " bob: a nick is 1 to 32 characters of A-Z a-z 0-9 _ -"},
		{"/nick a b", CodeBadNick, "a b: a nick is 1 to 32 characters of A-Z a-z 0-9 _ -"},
		{"/nick " + strings.Repeat("n", 33), CodeBadNick, strings.Repeat("n", 33) + ": a nick is 1 to 32 characters of A-Z a-z 0-9 _ -"},
		{"/join", CodeUsage, "/join ROOM"},
		{"/join a.b", CodeBadRoom, "a.b: a room is 1 to 64 characters of A-Z a-z 0-9 _ -"},
		{"/who x", CodeUsage, "/who takes no argument"},
		{"/msg", CodeUsage, "/msg NICK TEXT"},
		{"/msg bob", CodeUsage, "/msg NICK TEXT"},
		{"/msg bob ", CodeUsage, "/msg NICK TEXT"},
		{"/msg b!b hi", CodeBadNick, "b!b: a nick is 1 to 32 characters of A-Z a-z 0-9 _ -"},
		{"/msg  bob hi", CodeBadNick, ": a nick is 1 to 32 characters of A-Z a-z 0-9 _ -"},
		{"/help me", CodeUsage, "/help takes no argument"},
		// Control characters: none reaches a client, nor is quoted back.
		{"red \x1b[31m", CodeBadText, "control character U+001B at byte 4: a message may hold no control character but TAB"},
		{"\x00", CodeBadText, "control character U+0000 at byte 0: a message may hold no control character but TAB"},
		{"over\rwrite", CodeBadText, "control character U+000D at byte 4: a message may hold no control character but TAB"},
		{"two\nlines", CodeBadText, "control character U+000A at byte 3: a message may hold no control character but TAB"},
		{"del\x7f", CodeBadText, "control character U+007F at byte 3: a message may hold no control character but TAB"},
		{"csi \u009b2J", CodeBadText, "control character U+009B at byte 4: a message may hold no control character but TAB"},
		{"//\x07", CodeBadText, "control character U+0007 at byte 1: a message may hold no control character but TAB"},
		{"/msg bob \x1b]0;title\x07", CodeBadText, "control character U+001B at byte 0: a message may hold no control character but TAB"},
		{"/msg b\x1bb hi", CodeBadNick, "b?b: a nick is 1 to 32 characters of A-Z a-z 0-9 _ -"},
		{"/join \x1b[2J", CodeBadRoom, "?[2J: a room is 1 to 64 characters of A-Z a-z 0-9 _ -"},
		{"/who\u009b", CodeUnknownCommand, "/who?"},
	}
	for _, c := range bad {
		_, err := ParseCommand([]byte(c.in))
		var pe *Error
		if !errors.As(err, &pe) || pe.Code != c.code || pe.Detail != c.detail {
			t.Errorf("%q: got %v, want %s: %s", c.in, err, c.code, c.detail)
		}
	}
}

func TestNames(t *testing.T) {
	for _, n := range []string{"a", "Z", "0", "_", "-", strings.Repeat("x", 32)} {
		if !ValidNick([]byte(n)) {
			t.Errorf("nick %q refused", n)
		}
	}
	for _, n := range []string{"", "a b", "a.b", "é", "a\n", strings.Repeat("x", 33)} {
		if ValidNick([]byte(n)) {
			t.Errorf("nick %q accepted", n)
		}
	}
	if !ValidRoom([]byte(strings.Repeat("r", 64))) || ValidRoom([]byte(strings.Repeat("r", 65))) {
		t.Error("room length limit is not 64")
	}
}

// FuzzParseCommand checks ParseCommand's promises on any input: no panic,
// fields that are sub-slices meeting the grammar, errors with a known code
// and a short, valid UTF-8 detail.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"hello", "//x", "/nick bob", "/join dev", "/msg bob hi", "/msg bob", "/who x",
		"/", "/ ", "/nick \xff", "/msg \xff\xfe x", "/rooms", "/quit", "/ping ", "\x00/", "/help", "a\tb", "\u009b", "/msg bob \x1b"} {
		f.Add([]byte(s))
	}
	codes := map[string]bool{}
	for _, c := range ErrorCodes() {
		codes[c] = true
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		if len(p) == 0 {
			return
		}
		cmd, err := ParseCommand(p)
		if err == nil && !ValidText(cmd.Text) {
			t.Fatalf("%q: text %q with a control character accepted", p, cmd.Text)
		}
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || !codes[pe.Code] {
				t.Fatalf("%q: error %v has no known code", p, err)
			}
			if !utf8.ValidString(pe.Detail) || len(pe.Detail) > 2*maxDetail+64 || !ValidText([]byte(pe.Detail)) {
				t.Fatalf("%q: detail %q", p, pe.Detail)
			}
			if (p[0] != '/' || bytes.HasPrefix(p, []byte("//"))) && pe.Code != CodeBadText {
				t.Fatalf("%q: a message got error %v", p, err)
			}
			return
		}
		var want string
		switch cmd.Op {
		case OpSay:
			want = string(cmd.Text)
			if p[0] == '/' {
				want = "/" + want
			}
			if len(cmd.Text) == 0 {
				t.Fatalf("%q: empty text", p)
			}
		case OpNick, OpJoin:
			valid := ValidNick(cmd.Name)
			word := "/nick "
			if cmd.Op == OpJoin {
				valid, word = ValidRoom(cmd.Name), "/join "
			}
			if !valid {
				t.Fatalf("%q: invalid name %q accepted", p, cmd.Name)
			}
			want = word + string(cmd.Name)
		case OpMsg:
			if !ValidNick(cmd.Name) || len(cmd.Text) == 0 {
				t.Fatalf("%q: bad /msg fields %q %q", p, cmd.Name, cmd.Text)
			}
			want = "/msg " + string(cmd.Name) + " " + string(cmd.Text)
		case OpRooms, OpWho, OpPing, OpQuit, OpHelp:
			want = strings.TrimSuffix(string(p), " ")
			if strings.Contains(want, " ") {
				t.Fatalf("%q: argument accepted by a command that takes none", p)
			}
			return
		default:
			t.Fatalf("%q: unknown op %d", p, cmd.Op)
		}
		if want != string(p) {
			t.Fatalf("%q: fields do not rebuild the frame: %q", p, want)
		}
	})
}
