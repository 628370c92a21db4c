package main

import (
	"errors"
	"os"

	"github.com/spf13/cobra"

	"github.com/bccguard/bccguard/config"
	"github.com/bccguard/bccguard/doctor"
)

// packagedConfig is where the packages install the config; doctor reads it
// when no --config is given, because it checks the installed daemon.
const packagedConfig = "/etc/bccguard/bccguard.yaml"

// errDoctorFailed makes doctor exit with status 1 after its report.
var errDoctorFailed = errors.New("doctor: at least one check failed (FAIL above)")

func newDoctorCmd() *cobra.Command {
	var file, postfixDir string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check the live Postfix wiring and say what would let mail through unconverted",
		Long: "Read bccguard's config and Postfix's effective config (postconf, master.cf services\n" +
			"and their -o overrides), connect to the milter, and print one line per check: ok,\n" +
			"warn or FAIL, with the fix. Exit status is 1 if any check failed, 0 otherwise.\n" +
			"Without --config it reads " + packagedConfig + " when that exists.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("config") {
				if _, err := os.Stat(packagedConfig); err == nil {
					file = packagedConfig
				}
			}
			c, err := config.Load(file)
			if err != nil {
				return err
			}
			r, err := doctor.Run(cmd.Context(), doctor.Options{Config: c, PostfixDir: postfixDir, Version: versionString()})
			if err != nil {
				return err
			}
			if err := r.Write(cmd.OutOrStdout()); err != nil {
				return err
			}
			if r.Failed() {
				return errDoctorFailed
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "config file (YAML); default: "+packagedConfig+" if it exists, else built-in defaults")
	cmd.Flags().StringVar(&postfixDir, "postfix-config", "", "Postfix configuration directory (default: postconf -h config_directory)")
	return cmd
}
