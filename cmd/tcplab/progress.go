package main

import (
	"io"
	"os"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/sys/unix"
)

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// liveBar is a progress bar with a line of live text, drawn with mpb. A nil
// liveBar (w is not a terminal) does nothing, so callers need no checks.
type liveBar struct {
	p     *mpb.Progress
	bar   *mpb.Bar
	total int64
	mu    sync.Mutex
	text  string
}

// newLiveBar draws a bar on w if w is a terminal; otherwise it returns nil.
func newLiveBar(w io.Writer, name string, total int64) *liveBar {
	if !isTerminal(w) {
		return nil
	}
	lb := &liveBar{p: mpb.New(mpb.WithOutput(w), mpb.WithWidth(30), mpb.WithRefreshRate(200*time.Millisecond)), total: max(total, 1)}
	lb.bar = lb.p.AddBar(lb.total,
		mpb.PrependDecorators(decor.Name(name+" "), decor.Percentage(decor.WCSyncSpace)),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
			lb.mu.Lock()
			defer lb.mu.Unlock()
			return lb.text
		})),
	)
	return lb
}

// update moves the bar to cur and replaces its text.
func (lb *liveBar) update(cur int64, text string) {
	if lb == nil {
		return
	}
	lb.mu.Lock()
	lb.text = text
	lb.mu.Unlock()
	lb.bar.SetCurrent(min(cur, lb.total-1)) // finish completes it
}

// done completes the bar and waits until it is drawn.
func (lb *liveBar) done() { lb.finish(true) }

// finish ends the bar and waits until it is drawn: completed, it fills to
// 100%; otherwise (interrupted) it stays where the work stopped.
func (lb *liveBar) finish(completed bool) {
	if lb == nil {
		return
	}
	if completed {
		lb.bar.SetCurrent(lb.total) // reaching its total completes a bar
	} else {
		lb.bar.Abort(false) // keep it drawn, at its place
	}
	lb.p.Wait()
}
