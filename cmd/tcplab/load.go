package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tcplab/tcplab/frame"
	"github.com/tcplab/tcplab/load"
)

// loadOptions holds the load command's flags.
type loadOptions struct {
	cfg     load.Config
	framing string
	json    bool
	work    workLoadFlags
}

func newLoadCmd() *cobra.Command {
	o := &loadOptions{}
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Drive a server with N connections and report success, throughput and latency",
		Long: `Drive a server with N connections and report success, throughput and latency.

echo runs closed loop (send, wait for the echo, send) unless --rate sets a
total rate in messages per second: then messages are due at fixed times and
latency counts from the time each was due (coordinated omission corrected).
chat puts every connection in one room and --senders of them post at --rate
in total; every member measures delivery latency. work sends --work (echo,
sha:N or sleep:DURATION), --heavy of the connections --heavy-work instead,
checks every reply, and reports latency per class (light, heavy).

A connection counts as successful only after one application round trip (an
echo, or the chat server's HELLO) within --connect-timeout. The run reports
its own CPU use and flags a run where it used 90% of a core or more.`,
		Example: `  tcplab load --addr 127.0.0.1:7000 --conns 100 --duration 10s
  tcplab load --conns 1000 --rate 20000 --json
  tcplab load --app chat --conns 200 --senders 10 --rate 500
  tcplab load --app work --conns 21 --work echo --heavy 1 --heavy-work sha:60000`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	f := cmd.Flags()
	c := &o.cfg
	f.StringVar(&c.Addr, "addr", load.DefaultAddr, "server address")
	f.StringVar(&c.App, "app", load.AppEcho, "protocol: echo, chat or work")
	f.IntVar(&c.Conns, "conns", load.DefaultConns, "concurrent connections")
	f.DurationVar(&c.Duration, "duration", load.DefaultDuration, "how long to send")
	f.IntVar(&c.Size, "size", load.DefaultSize, "message size in bytes (chat: text size); conns x size at most 512 MiB (two buffers each, 1 GiB)")
	f.Float64Var(&c.Rate, "rate", 0, "total messages per second; 0 is closed loop (chat: 0 means 50/s per sender)")
	f.Float64Var(&c.ConnectRate, "connect-rate", 0, "new connections per second; 0 opens all at once")
	f.DurationVar(&c.ConnectTimeout, "connect-timeout", load.DefaultConnectTimeout, "time for a connection's first round trip, from its connect")
	f.IntVar(&c.PerConn, "per-conn", 0, "echo: close each connection after K messages and open a new one; 0 keeps them")
	f.IntVar(&c.Senders, "senders", 0, "chat: connections that post (default min(conns, 10))")
	f.IntVar(&c.SendBuffer, "send-buffer", 0, "chat: each sender's kernel send buffer (SO_SNDBUF) in bytes; 0 is the kernel's")
	f.StringVar(&o.framing, "framing", string(frame.Length), "chat framing: length or line")
	f.StringVar(&c.Room, "room", load.DefaultRoom, "chat room")
	f.BoolVar(&o.json, "json", false, "print the result as one JSON object on the last line")
	addWorkLoadFlags(f, &o.work, c)
	return cmd
}

func (o *loadOptions) run(cmd *cobra.Command) error {
	o.cfg.Framing = frame.Kind(o.framing)
	if o.cfg.App != load.AppChat {
		if err := chatOnly(cmd, "framing", "senders", "send-buffer", "room"); err != nil {
			return err
		}
	}
	if err := o.work.apply(cmd, &o.cfg); err != nil {
		return err
	}
	cfg, err := typedConfig(o.cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bar := newLiveBar(cmd.ErrOrStderr(), "load", 1000)
	cfg.Progress = func(p load.Progress) {
		bar.update(int64(1000*p.Elapsed/max(p.Total, time.Millisecond)),
			fmt.Sprintf("ok %d  failed %d  msgs %d", p.OK, p.Failed, p.Msgs))
	}
	res, err := load.Run(ctx, cfg)
	bar.done()
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if o.json {
		b, err := json.Marshal(res)
		if err != nil {
			return fmt.Errorf("load: %w", err)
		}
		fmt.Fprintf(out, "%s\n", b)
	} else {
		fmt.Fprintln(out, res.Summary())
	}
	if res.OKConns == 0 {
		return fmt.Errorf("no connection succeeded (%s)", firstOr(res.FirstError, "no error recorded"))
	}
	return contextErr(ctx)
}

// typedConfig validates a load configuration read from flags and fills in
// its defaults. Every flag carries its default, so a zero was typed and is
// refused, except where the flag documents 0 as "the default" (chat
// --rate and --senders) and for the chat settings bench has no flags for.
func typedConfig(c load.Config) (load.Config, error) {
	def := c.WithDefaults()
	c.Senders, c.Rate, c.Framing, c.Room = def.Senders, def.Rate, def.Framing, def.Room
	if err := c.Validate(); err != nil {
		return c, usageError{err}
	}
	return def, nil
}

// chatOnly refuses, as a usage error, any of the named flags that was
// set: they apply to --app chat only.
func chatOnly(cmd *cobra.Command, names ...string) error {
	for _, name := range names {
		if cmd.Flags().Changed(name) {
			return usageError{fmt.Errorf("--%s applies to --app chat", name)}
		}
	}
	return nil
}

// contextErr reports an interrupted run.
func contextErr(ctx context.Context) error {
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	return nil
}

func firstOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
