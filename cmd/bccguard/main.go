// Command bccguard is a Postfix milter that hides multi-recipient To lists
// with outside addresses: everyone still receives the mail, nobody sees
// the others.
//
//	bccguard serve [--config FILE] [--listen ADDR]
//	bccguard check [--config FILE] [--from ADDR] [--rcpt ADDR]... [--json] [FILE.eml | -]
//	bccguard config check [--config FILE]
//	bccguard notice preview [--config FILE] [--from ADDR] [MESSAGE.eml | -]
//	bccguard doctor [--config FILE] [--postfix-config DIR]
//	bccguard version
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// usageError marks bad command-line usage, which exits with status 2.
type usageError struct{ error }

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit status: 0 on success
// (for check: on any decision), 1 on an error, 2 on bad usage.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "bccguard:", err)
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "bccguard",
		Short:         "Postfix milter that moves multi-recipient external To lists out of sight",
		SilenceErrors: true,
		SilenceUsage:  true,
		// With no subcommand there is nothing to do: that is a usage error.
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError{errors.New("a command is required: serve, check, config check, doctor or version (see bccguard --help)")}
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newServeCmd(), newCheckCmd(), newConfigCmd(), newNoticeCmd(), newDoctorCmd(), newAuditHashCmd(), newVersionCmd())
	return root
}

// usageArgs wraps a cobra argument validator so its errors exit with 2.
func usageArgs(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := v(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}
