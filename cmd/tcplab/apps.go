package main

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/tcplab/tcplab/app/echo"
	"github.com/tcplab/tcplab/handler"
)

// app is a protocol the serve command can run.
type app struct {
	name    string
	summary string
	new     func(o *serveOptions) (handler.Handler, error)
	// flags lists the serve flags only this app reads; setting one for
	// another app is warned about and ignored.
	flags []string
}

// apps lists the protocols, by --app name.
func apps() []app {
	return []app{
		{name: "echo", summary: "RFC 862 echo", new: func(*serveOptions) (handler.Handler, error) { return echo.New(), nil }},
		{name: "chat", summary: "rooms, nicks and private messages (docs/protocol.md)", new: newChatApp, flags: chatFlagNames()},
	}
}

// warnIgnoredAppFlags warns about app-specific flags set for an app that
// does not read them.
func warnIgnoredAppFlags(flags *pflag.FlagSet, chosen app, log *slog.Logger) {
	for _, a := range apps() {
		for _, name := range a.flags {
			if a.name != chosen.name && flags.Changed(name) && !slices.Contains(chosen.flags, name) {
				log.Warn("flag does not apply to this app; ignored", "flag", "--"+name, "app", chosen.name)
			}
		}
	}
}

func lookupApp(name string) (app, error) {
	var names []string
	for _, a := range apps() {
		if a.name == name {
			return a, nil
		}
		names = append(names, a.name)
	}
	slices.Sort(names)
	return app{}, usageError{fmt.Errorf("unknown app %q (have %s)", name, strings.Join(names, ", "))}
}
