package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tcplab/tcplab/load"
)

// workLoadFlags are the load command's flags for --app work (serve's
// work flags are the app's, in app/registry).
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
