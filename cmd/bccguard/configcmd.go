package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/bccguard/bccguard/config"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with the configuration file",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError{fmt.Errorf("a subcommand is required: config check")}
		},
	}
	var file string
	var quiet bool
	check := &cobra.Command{
		Use:   "check",
		Short: "Validate the config and print the effective values",
		Long: "Validate the config file and print the configuration as it applies, with every\n" +
			"default filled in. On a bad file, list every problem and exit with status 1.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := config.Load(file)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, w := range c.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "bccguard: warning:", w)
			}
			if quiet {
				return nil
			}
			fmt.Fprintf(out, "# %s: OK\n%s", c.Name(), c.YAML())
			return nil
		},
	}
	check.Flags().StringVarP(&file, "config", "c", "", "config file (YAML); default: built-in defaults")
	check.Flags().BoolVarP(&quiet, "quiet", "q", false, "print nothing on a good config (for ExecStartPre)")
	cmd.AddCommand(check)
	return cmd
}
