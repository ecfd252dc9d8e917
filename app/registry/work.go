package registry

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/tcplab/tcplab/app/work"
	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/handler"
)

// workFlags defines the work app's parameters: its own limits, and
// --max-frame, which it shares with the chat (the same default and
// meaning; serve offers one flag for both).
func workFlags(fs *pflag.FlagSet) {
	d := work.DefaultOptions()
	fs.Int("max-sha", d.MaxSha, `work: most rounds a "sha N TEXT" request may ask for; past it ERR too-much`)
	fs.Duration("max-sleep", d.MaxSleep, `work: longest a "sleep US" request may block its handler; past it ERR too-much`)
	fs.Int("max-frame", d.MaxFrame, "chat, work: largest frame a client may send, in bytes")
	fs.Bool("offload", false, `work: run "sleep US" requests off the event loop (handler.Offload) rather than where the model runs the handler`)
}

// newWork builds the work handler from its parameters. As the chat's, its
// largest reply is a quarter of the server's MaxPending (or --max-frame if
// smaller), and a frame must fit in MaxInbound.
func newWork(p *Params) (handler.Handler, error) {
	maxSha, maxSleep, maxFrame := p.Int("max-sha"), p.Duration("max-sleep"), p.Int("max-frame")
	cfg := p.Config
	switch {
	case maxSha < 1:
		return nil, fmt.Errorf("--max-sha %d: must be at least 1", maxSha)
	case maxSleep < time.Microsecond:
		return nil, fmt.Errorf("--max-sleep %v: must be at least 1µs", maxSleep)
	case maxFrame < work.MinReply:
		return nil, fmt.Errorf("--max-frame %d is too small for work: want at least %d", maxFrame, work.MinReply)
	case maxFrame+frame.HeaderLen+2 > cfg.MaxInbound:
		return nil, fmt.Errorf("--max-frame %d needs --max-inbound of at least %d (now %d)", maxFrame, maxFrame+frame.HeaderLen+2, cfg.MaxInbound)
	case cfg.MaxPending/4 < work.MinReply:
		return nil, fmt.Errorf("--max-pending %d is too small for work: want at least %d", cfg.MaxPending, 4*work.MinReply)
	}
	return work.New(work.Options{
		MaxSha: maxSha, MaxSleep: maxSleep,
		MaxFrame: maxFrame, MaxReply: min(maxFrame, cfg.MaxPending/4),
		Offload: p.Bool("offload"),
	})
}
