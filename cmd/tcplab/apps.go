package main

import (
	"log/slog"
	"slices"

	"github.com/spf13/pflag"

	"github.com/tcplab/tcplab/app/registry"
)

// chatServeExample is the serve command's example of the chat app.
const chatServeExample = "  tcplab serve --app chat --framing line   # then: nc 127.0.0.1 7000, or tcplab chat --nick alice --framing line"

// addAppFlags adds every app's flags to serve's (app/registry). Two apps
// that define a flag of the same name share the first one's definition.
func addAppFlags(f *pflag.FlagSet) {
	for _, a := range registry.Apps() {
		f.AddFlagSet(a.FlagSet())
	}
}

// appParams returns the values of app a's flags, by name: what its
// constructor, and a fork or prefork child's, builds from.
func appParams(flags *pflag.FlagSet, a registry.App) map[string]string {
	values := map[string]string{}
	for _, name := range a.FlagNames() {
		values[name] = flags.Lookup(name).Value.String()
	}
	return values
}

// warnIgnoredAppFlags warns about app-specific flags set for an app that
// does not read them.
func warnIgnoredAppFlags(flags *pflag.FlagSet, chosen registry.App, log *slog.Logger) {
	own := chosen.FlagNames()
	for _, a := range registry.Apps() {
		for _, name := range a.FlagNames() {
			if a.Name != chosen.Name && flags.Changed(name) && !slices.Contains(own, name) {
				log.Warn("flag does not apply to this app; ignored", "flag", "--"+name, "app", chosen.Name)
			}
		}
	}
}
