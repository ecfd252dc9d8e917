package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/tcplab/tcplab/app/echo"
	"github.com/tcplab/tcplab/handler"
)

// app is a protocol the serve command can run.
type app struct {
	name    string
	summary string
	new     func(o *serveOptions) (handler.Handler, error)
}

// apps lists the protocols, by --app name.
func apps() []app {
	return []app{
		{name: "echo", summary: "RFC 862 echo", new: func(*serveOptions) (handler.Handler, error) { return echo.New(), nil }},
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
