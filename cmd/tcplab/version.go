package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is tcplab's release.
const version = "0.1.0"

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "tcplab %s\n", versionText())
			return nil
		},
	}
}

// versionText is the release, the Go version and the VCS revision the
// binary was built from: "0.1.0 (go1.26.0 abc123...)". `tcplab version`
// and `tcplab --version` print it.
func versionText() string {
	goVersion, rev := "unknown", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = " " + s.Value
			}
		}
	}
	return fmt.Sprintf("%s (%s%s)", version, goVersion, rev)
}
