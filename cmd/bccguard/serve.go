package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/bccguard/bccguard/config"
	"github.com/bccguard/bccguard/milter"
	"github.com/bccguard/bccguard/policy"
)

// shutdownTimeout bounds how long sessions in flight may take to finish
// after SIGTERM; Postfix tempfails what is cut off, so nothing is lost.
const shutdownTimeout = 10 * time.Second

func newServeCmd() *cobra.Command {
	var file, listen string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the milter daemon",
		Long: "Run the milter daemon. SIGHUP reloads the config (a bad file is refused and the\n" +
			"old config keeps serving); SIGTERM or SIGINT stops accepting and lets sessions in\n" +
			"flight finish; a second signal exits at once.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), file, listen, cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "config file (YAML); default: built-in defaults")
	cmd.Flags().StringVar(&listen, "listen", "", "milter address, overrides the config: inet:HOST:PORT or unix:/path")
	return cmd
}

func newLogger(c *config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(ctx context.Context, file, listenFlag string, logOut io.Writer) error {
	c, err := config.Load(file)
	if err != nil {
		return err
	}
	listen := c.Listen
	if listenFlag != "" {
		listen = listenFlag
	}
	network, address, err := config.ParseListen(listen)
	if err != nil {
		return usageError{fmt.Errorf("--listen: %w", err)}
	}
	log := newLogger(c, logOut)
	for _, w := range c.Warnings {
		log.Warn("config: " + w)
	}

	var current atomic.Pointer[policy.Config]
	current.Store(c.Policy)
	srv := milter.NewServer(&current, log)
	ln, err := milter.Listen(network, address, c.SocketMode)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("bccguard started", slog.String("listen", listen), slog.String("config", configName(c)), slog.String("version", versionString()))

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	for {
		select {
		case err := <-served:
			return err
		case <-ctx.Done():
			return shutdown(srv, served, sigs, log)
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				log.Info("stopping: no new sessions, waiting for sessions in flight", slog.String("signal", sig.String()), slog.Duration("timeout", shutdownTimeout))
				return shutdown(srv, served, sigs, log)
			}
			reload(file, &current, log)
		}
	}
}

// reload swaps in a new policy only when the whole file is valid.
func reload(file string, current *atomic.Pointer[policy.Config], log *slog.Logger) {
	c, err := config.Load(file)
	if err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			for _, p := range ce.Problems {
				log.Error("config reload refused; the old config keeps serving", slog.String("problem", p.String()))
			}
		} else {
			log.Error("config reload refused; the old config keeps serving", slog.Any("error", err))
		}
		return
	}
	current.Store(c.Policy)
	for _, w := range c.Warnings {
		log.Warn("config: " + w)
	}
	log.Info("config reloaded", slog.String("config", configName(c)))
}

// shutdown drains sessions until shutdownTimeout or a second signal.
func shutdown(srv *milter.Server, served chan error, sigs chan os.Signal, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	go func() {
		for sig := range sigs {
			if sig != syscall.SIGHUP {
				log.Warn("second signal: exiting now", slog.String("signal", sig.String()))
				cancel()
				return
			}
		}
	}()
	err := srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		log.Warn("sessions still in flight were cut; Postfix applies milter_default_action to them")
		err = nil
	}
	if serr := <-served; serr != nil && err == nil {
		err = serr
	}
	log.Info("bccguard stopped")
	return err
}

func configName(c *config.Config) string {
	if c.File == "" {
		return "built-in defaults"
	}
	return c.File
}
