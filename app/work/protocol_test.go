package work

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"
)

var testLimits = Limits{MaxSha: 1000, MaxSleep: 50 * time.Millisecond}

func TestParseRequest(t *testing.T) {
	for _, x := range []struct {
		in   string
		want Request
	}{
		{"sha 1 abc", Request{Verb: VerbSha, Rounds: 1, Text: []byte("abc")}},
		{"sha 1000 a b  c ", Request{Verb: VerbSha, Rounds: 1000, Text: []byte("a b  c ")}},
		{"sha 0001 x", Request{Verb: VerbSha, Rounds: 1, Text: []byte("x")}},
		{"sleep 0", Request{Verb: VerbSleep}},
		{"sleep 50000", Request{Verb: VerbSleep, Sleep: 50 * time.Millisecond}},
		{"echo  x ", Request{Verb: VerbEcho, Text: []byte(" x ")}},
	} {
		got, err := ParseRequest([]byte(x.in), testLimits)
		if err != nil || got.Verb != x.want.Verb || got.Rounds != x.want.Rounds || got.Sleep != x.want.Sleep || string(got.Text) != string(x.want.Text) {
			t.Errorf("%q: (%+v, %v), want %+v", x.in, got, err, x.want)
		}
		back := AppendRequest(nil, got)
		if again, err := ParseRequest(back, testLimits); err != nil || !sameRequest(again, got) {
			t.Errorf("%q formats back as %q, which parses as (%+v, %v)", x.in, back, again, err)
		}
	}
	for in, code := range map[string]string{
		"sha 1001 x": CodeTooMuch, "sha 99999999999999999999999 x": CodeTooMuch, "sleep 50001": CodeTooMuch,
		"sha 0 x": CodeUsage, "sha x y": CodeUsage, "sha 1": CodeUsage, "sha 1 ": CodeUsage, "sha": CodeUsage, "sha -1 x": CodeUsage,
		"sleep": CodeUsage, "sleep ": CodeUsage, "sleep 1 ": CodeUsage, "sleep x": CodeUsage,
		"echo": CodeUsage, "echo ": CodeUsage,
		"": CodeUnknownCommand, "Sha 1 x": CodeUnknownCommand, "quit": CodeUnknownCommand, " echo x": CodeUnknownCommand,
	} {
		if _, err := ParseRequest([]byte(in), testLimits); err == nil || err.Code != code {
			t.Errorf("%q: %v, want code %s", in, err, code)
		}
	}
}

func sameRequest(a, b Request) bool {
	return a.Verb == b.Verb && a.Rounds == b.Rounds && a.Sleep == b.Sleep && string(a.Text) == string(b.Text)
}

func TestSumIsTheChainOfSHA256(t *testing.T) {
	h := sha256.Sum256([]byte("tcplab"))
	for n := 1; n <= 5; n++ {
		if got := Sum(n, []byte("tcplab")); got != h {
			t.Fatalf("Sum(%d): %x, want %x", n, got, h)
		}
		h = sha256.Sum256(h[:])
	}
	r := Request{Verb: VerbSha, Rounds: 3, Text: []byte("x")}
	want := Sum(3, []byte("x"))
	if got := string(AppendReply(nil, r)); got != "OK "+hex.EncodeToString(want[:]) {
		t.Errorf("reply %q", got)
	}
}

func TestOptionsDefaultsAndRefusals(t *testing.T) {
	h, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Options(); got != DefaultOptions() {
		t.Errorf("defaults %+v, want %+v", got, DefaultOptions())
	}
	for _, o := range []Options{{MaxSha: -1}, {MaxSleep: time.Nanosecond}, {MaxFrame: 100}, {MaxReply: 10}, {MaxFrame: 1 << 31}} {
		if _, err := New(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}
