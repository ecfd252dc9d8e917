package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tcplab/tcplab/app/work"
	"github.com/tcplab/tcplab/handler"
	"github.com/tcplab/tcplab/load"
)

// workFlags are the serve command's flags for --app work.
type workFlags struct {
	maxSha   int
	maxSleep time.Duration
}

// workFlagNames lists the serve flags the work app reads: its own, and the
// chat's --max-frame, which means the same for it.
func workFlagNames() []string { return []string{"max-sha", "max-sleep", "max-frame"} }

func addWorkFlags(f *pflag.FlagSet, w *workFlags) {
	d := work.DefaultOptions()
	f.IntVar(&w.maxSha, "max-sha", d.MaxSha, "work: most rounds a \"sha N TEXT\" request may ask for; past it ERR too-much")
	f.DurationVar(&w.maxSleep, "max-sleep", d.MaxSleep, "work: longest a \"sleep US\" request may block its handler; past it ERR too-much")
}

// newWorkApp builds the work handler from the serve command's flags. As
// the chat's, its largest reply is a quarter of --max-pending (or
// --max-frame if smaller), and a frame must fit in --max-inbound. A fork
// or prefork child parses the same command line, so it needs no
// parameters from its parent.
func newWorkApp(o *serveOptions) (handler.Handler, error) {
	switch {
	case o.work.maxSha < 1:
		return nil, fmt.Errorf("--max-sha %d: must be at least 1", o.work.maxSha)
	case o.work.maxSleep < time.Microsecond:
		return nil, fmt.Errorf("--max-sleep %v: must be at least 1µs", o.work.maxSleep)
	case o.chat.maxFrame < work.MinReply:
		return nil, fmt.Errorf("--max-frame %d is too small for work: want at least %d", o.chat.maxFrame, work.MinReply)
	case o.chat.maxFrame+6 > o.cfg.MaxInbound:
		return nil, fmt.Errorf("--max-frame %d needs --max-inbound of at least %d (now %d)", o.chat.maxFrame, o.chat.maxFrame+6, o.cfg.MaxInbound)
	case o.cfg.MaxPending/4 < work.MinReply:
		return nil, fmt.Errorf("--max-pending %d is too small for work: want at least %d", o.cfg.MaxPending, 4*work.MinReply)
	}
	return work.New(work.Options{
		MaxSha: o.work.maxSha, MaxSleep: o.work.maxSleep,
		MaxFrame: o.chat.maxFrame, MaxReply: min(o.chat.maxFrame, o.cfg.MaxPending/4),
	})
}

// workLoadFlags are the load command's flags for --app work.
type workLoadFlags struct {
	work, heavyWork string
}

func addWorkLoadFlags(f *pflag.FlagSet, w *workLoadFlags, c *load.Config) {
	f.StringVar(&w.work, "work", load.WorkEcho, "work: the request each light connection sends: echo, sha:N (N rounds of SHA-256) or sleep:DURATION (the handler blocks)")
	f.IntVar(&c.Heavy, "heavy", 0, "work: how many connections send --heavy-work instead (the greedy clients)")
	f.StringVar(&w.heavyWork, "heavy-work", "", "work: the request the --heavy connections send, as --work")
}

// apply parses the work specs into cfg, refusing (exit 2) a bad spec or a
// work flag with another app.
func (w *workLoadFlags) apply(cmd *cobra.Command, cfg *load.Config) error {
	if cfg.App != load.AppWork {
		for _, name := range []string{"work", "heavy", "heavy-work"} {
			if cmd.Flags().Changed(name) {
				return usageError{fmt.Errorf("--%s applies to --app work", name)}
			}
		}
		return nil
	}
	var err error
	if cfg.Work, err = load.ParseWorkSpec(w.work); err != nil {
		return usageError{fmt.Errorf("--work %w", err)}
	}
	if w.heavyWork != "" {
		if cfg.HeavyWork, err = load.ParseWorkSpec(w.heavyWork); err != nil {
			return usageError{fmt.Errorf("--heavy-work %w", err)}
		}
	}
	return nil
}
