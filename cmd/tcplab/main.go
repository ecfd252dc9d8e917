// Command tcplab serves echo and chat under any concurrency model, and
// measures the models side by side.
//
//	tcplab serve --app echo --model goroutine --addr 127.0.0.1:7000
//	tcplab serve --app chat --framing line
//	tcplab chat --addr 127.0.0.1:7000 --nick alice --room dev
//	tcplab models
//	tcplab version      (or tcplab --version)
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// usageError marks bad input on the command line: it exits with code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// runtimeError marks an error that an app's constructor met while acting
// on valid flags (a bus it cannot reach), so serve exits 1 for it rather
// than 2 as for the constructor's other errors, which are bad flags.
type runtimeError struct{ err error }

func (e runtimeError) Error() string { return e.err.Error() }
func (e runtimeError) Unwrap() error { return e.err }

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the exit code: 0 on
// success, 2 for bad usage, 1 for any other failure. Cancelling ctx stops
// a long-running command as a signal would.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "tcplab: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "tcplab",
		Short:         "TCP servers under every concurrency model, and a lab to compare them",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          noArgs,
		RunE:          func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
		Version:       versionText(), // --version, as `tcplab version` prints it
	}
	root.SetVersionTemplate("tcplab {{.Version}}\n")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(newServeCmd(), newModelsCmd(), newVersionCmd(), newChatCmd(), newLoadCmd(), newBenchCmd(), newDoctorCmd())
	return root
}

// noArgs refuses positional arguments (and unknown subcommands) as a usage
// error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		if cmd.HasSubCommands() {
			return usageError{fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())}
		}
		return usageError{fmt.Errorf("%s takes no arguments, got %q", cmd.CommandPath(), args[0])}
	}
	return nil
}
