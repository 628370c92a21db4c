package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/bccguard/bccguard/config"
	"github.com/bccguard/bccguard/daemon"
)

func newServeCmd() *cobra.Command {
	var file, listen string
	var allowRoot bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the milter daemon",
		Long: "Run the milter daemon. SIGHUP reloads the config (a bad file is refused and the\n" +
			"old config keeps serving); SIGTERM or SIGINT stops accepting and lets sessions in\n" +
			"flight finish within shutdown_timeout; a second signal exits at once.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if listen != "" {
				if _, _, err := config.ParseListen(listen); err != nil {
					return usageError{fmt.Errorf("--listen: %w", err)}
				}
			}
			return serve(file, listen, allowRoot, cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "config file (YAML); default: built-in defaults")
	cmd.Flags().StringVar(&listen, "listen", "", "milter address, overrides the config: inet:HOST:PORT or unix:/path")
	cmd.Flags().BoolVar(&allowRoot, "allow-root", false, "run even as root (not recommended)")
	return cmd
}

func serve(file, listen string, allowRoot bool, stderr io.Writer) error {
	c, err := config.Load(file)
	if err != nil {
		return err
	}
	if os.Geteuid() == 0 && !allowRoot {
		return errors.New("serve: refusing to run as root: bccguard needs no privileges; run it as its own user (the Debian package's unit does), or pass --allow-root")
	}
	log, level, err := daemon.NewLogger(c, stderr)
	if err != nil {
		return err
	}
	// Catch signals before the listener opens, so that none is missed.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	d, err := daemon.Start(c, daemon.Options{File: file, Listen: listen, Version: versionString()}, log, level)
	if err != nil {
		return err
	}
	for {
		select {
		case err := <-d.Done():
			// A listener failed: stop the rest as on SIGTERM, so that
			// queued notices go out or are logged as dropped.
			ctx, cancel := context.WithTimeout(context.Background(), d.Config().ShutdownTimeout)
			d.Shutdown(ctx)
			cancel()
			return err
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				d.Reload()
				continue
			}
			timeout := d.Config().ShutdownTimeout
			log.Info("stopping: no new sessions, waiting for sessions in flight",
				slog.String("signal", sig.String()), slog.Duration("timeout", timeout))
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			stopped := make(chan error, 1)
			go func() { stopped <- d.Shutdown(ctx) }()
			// A second signal ends the process now, whatever Shutdown
			// waits for: a split awaiting the reply to a copy's dot (up to
			// reinject.timeout), a notice being handed over. That is as
			// safe as a kill, which the crash tests cover: the records of
			// the copies Postfix accepted are durable, and a retry sends
			// again at most the one copy per split whose record was not
			// written yet (docs/reliability.md).
			for {
				select {
				case err := <-stopped:
					return err
				case sig := <-sigs:
					if sig == syscall.SIGHUP {
						continue
					}
					log.Warn("second signal: exiting now, without waiting for the shutdown", slog.String("signal", sig.String()))
					return fmt.Errorf("serve: stopped by a second signal (%s) before the shutdown ended", sig)
				}
			}
		}
	}
}
