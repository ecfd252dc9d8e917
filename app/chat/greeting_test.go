package chat

import (
	"testing"

	"github.com/tcplab/tcplab/frame"
)

func TestGreetingFraming(t *testing.T) {
	line, length := encoder{kind: frame.Line, max: MinServerFrame}, encoder{kind: frame.Length, max: MinServerFrame}
	for name, c := range map[string]struct {
		b    []byte
		kind frame.Kind
		ok   bool
	}{
		"line HELLO":      {line.hello("guest-1"), frame.Line, true},
		"length HELLO":    {length.hello("guest-1"), frame.Length, true},
		"line refusal":    {line.closing(CodeServerFull, "full"), frame.Line, true},
		"length refusal":  {length.closing(CodeTooManyConns, "many"), frame.Length, true},
		"line BYE":        {line.bye(ByeError), frame.Line, true},
		"length BYE":      {length.bye(ByeError), frame.Length, true},
		"an echo":         {[]byte("conn 0 conn 0 "), "", false},
		"HTTP":            {[]byte("HTTP/1.1 400 Bad Request\r\n"), "", false},
		"nothing":         {nil, "", false},
		"a header alone":  {[]byte{0, 0, 0, 22}, "", false},
		"HELLO of others": {[]byte("HELLO world\n"), "", false},
	} {
		kind, ok := GreetingFraming(c.b)
		if kind != c.kind || ok != c.ok {
			t.Errorf("%s: %q is (%q, %v), want (%q, %v)", name, c.b, kind, ok, c.kind, c.ok)
		}
	}
}

// FuzzGreetingFraming: any bytes are judged without a panic, and a HELLO
// the server makes for any nick is recognized in its own framing.
func FuzzGreetingFraming(f *testing.F) {
	f.Add([]byte("HELLO tcplab 1 guest-1\n"), "guest-1")
	f.Add([]byte{0, 0, 0, 4, 'B', 'Y', 'E', ' '}, "x")
	f.Fuzz(func(t *testing.T, b []byte, nick string) {
		GreetingFraming(b)
		if !ValidNick([]byte(nick)) {
			return
		}
		for _, k := range []frame.Kind{frame.Line, frame.Length} {
			hello := encoder{kind: k, max: MinServerFrame}.hello(nick)
			if got, ok := GreetingFraming(hello); got != k || !ok {
				t.Fatalf("%q: (%q, %v), want %s", hello, got, ok, k)
			}
		}
	})
}
