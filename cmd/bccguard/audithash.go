package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/bccguard/bccguard/audit"
	"github.com/bccguard/bccguard/config"
)

func newAuditHashCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "audit-hash ADDRESS...",
		Short: "Print the audit log's hash of addresses (audit.recipients: hash)",
		Long: "Print the value that the audit log shows for each address when audit.recipients is\n" +
			"hash, so that an admin can search the log for one address without the log storing it.",
		Args: usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := config.Load(file)
			if err != nil {
				return err
			}
			if c.Audit.Mode != audit.ModeHash {
				return errors.New("audit-hash: audit.recipients is not hash in this config")
			}
			for _, a := range args {
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", audit.HashAddress(c.Audit.HashKey, a), a)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "config file (YAML)")
	return cmd
}
