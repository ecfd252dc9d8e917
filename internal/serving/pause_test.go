package serving

import (
	"testing"
	"time"

	"github.com/tcplab/tcplab/handler"
)

// TestPauseRequestKeepsTheLongest: the longest pause asked since the last
// Take wins, cut to handler.MaxPause; nothing (or less than nothing)
// asks for no pause; Take clears.
func TestPauseRequestKeepsTheLongest(t *testing.T) {
	var p PauseRequest
	if p.Asked() || p.Take() != 0 {
		t.Fatal("a new request asks for a pause")
	}
	p.Ask(0)
	p.Ask(-time.Second)
	if p.Asked() {
		t.Fatal("a pause of 0 or less was recorded")
	}
	p.Ask(2 * time.Millisecond)
	p.Ask(5 * time.Millisecond)
	p.Ask(3 * time.Millisecond)
	if !p.Asked() {
		t.Fatal("no pause recorded")
	}
	if d := p.Take(); d != 5*time.Millisecond {
		t.Fatalf("Take %v, want the longest asked, 5ms", d)
	}
	if p.Asked() || p.Take() != 0 {
		t.Fatal("Take did not clear the request")
	}
	p.Ask(time.Hour)
	if d := p.Take(); d != handler.MaxPause {
		t.Fatalf("Take %v after asking an hour, want handler.MaxPause %v", d, handler.MaxPause)
	}
}
