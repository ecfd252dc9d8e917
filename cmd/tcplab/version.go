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
			goVersion, rev := "unknown", ""
			if bi, ok := debug.ReadBuildInfo(); ok {
				goVersion = bi.GoVersion
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						rev = " " + s.Value
					}
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "tcplab %s (%s%s)\n", version, goVersion, rev)
			return nil
		},
	}
}
