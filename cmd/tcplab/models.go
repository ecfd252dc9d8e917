package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/tcplab/tcplab/engine"
)

func newModelsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "models",
		Short: "List the concurrency models, one per line: name, description, caps, TLS support",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			for _, m := range engine.Models() {
				tls := "TLS"
				if !m.TLS {
					tls = "no TLS"
				}
				fmt.Fprintf(tw, "%s\t%s\t(%s; %s)\n", m.Name, m.Summary, m.Limits, tls)
			}
			return tw.Flush()
		},
	}
}
