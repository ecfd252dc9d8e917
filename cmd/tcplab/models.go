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
		Short: "List the concurrency models, one per line: name, description, caps",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			for _, m := range engine.Models() {
				fmt.Fprintf(tw, "%s\t%s\t(%s)\n", m.Name, m.Summary, m.Limits)
			}
			return tw.Flush()
		},
	}
}
