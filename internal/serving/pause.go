package serving

import (
	"sync/atomic"
	"time"

	"github.com/tcplab/tcplab/handler"
)

// PauseRequest holds the pause a session asked for through
// handler.Flow.PauseReading until its model takes it, after the Data call.
// Any goroutine may ask; the one that runs Data (or the loop it reports
// to) takes. Checking for a request is one atomic load, so a model looks
// after every Data call at no cost worth counting.
type PauseRequest struct{ d atomic.Int64 }

// Ask records a pause of d, cut to handler.MaxPause; the longest asked
// since the last Take wins. d <= 0 asks for nothing.
func (p *PauseRequest) Ask(d time.Duration) {
	d = min(d, handler.MaxPause)
	if d <= 0 {
		return
	}
	for {
		old := p.d.Load()
		if int64(d) <= old || p.d.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

// Asked reports whether a pause is waiting to be taken.
func (p *PauseRequest) Asked() bool { return p.d.Load() != 0 }

// Take returns the pause asked for, 0 if none, and clears it.
func (p *PauseRequest) Take() time.Duration { return time.Duration(p.d.Swap(0)) }
