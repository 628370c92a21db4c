// Package daemon runs bccguard as a service: the milter listener, the
// metrics endpoint, config reloads and graceful shutdown. The command in
// cmd/bccguard turns signals into calls of Reload and Shutdown.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/bccguard/bccguard/config"
	"github.com/bccguard/bccguard/metrics"
	"github.com/bccguard/bccguard/milter"
	"github.com/bccguard/bccguard/notice"
)

// Daemon is a running bccguard.
type Daemon struct {
	file    string
	listen  string
	config  atomic.Pointer[config.Config]
	log     *slog.Logger
	level   *slog.LevelVar
	metrics *metrics.Metrics
	milter  *milter.Server
	notices *notice.Notifier
	http    *http.Server
	ready   atomic.Bool
	served  chan error
}

// Options are what the command line gives the daemon.
type Options struct {
	// File is the config file, "" for built-in defaults; Reload reads it
	// again.
	File string
	// Listen overrides the config's listen address when not empty.
	Listen string
	// Version is reported in the log and the build info metric.
	Version string
}

// Start loads nothing: c is the already validated config. It opens the
// listeners and starts serving; errors are returned before anything runs.
func Start(c *config.Config, o Options, log *slog.Logger, level *slog.LevelVar) (*Daemon, error) {
	d := &Daemon{file: o.File, listen: c.Listen, log: log, level: level, served: make(chan error, 2)}
	if o.Listen != "" {
		d.listen = o.Listen
	}
	network, address, err := config.ParseListen(d.listen)
	if err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}
	d.config.Store(c)
	d.metrics = metrics.New(o.Version)
	d.metrics.ConfigLoaded(time.Now())
	d.milter = milter.NewServer(&d.config, log, d.metrics)
	d.checkSplitStore(c)

	ln, err := milter.Listen(network, address, c.SocketMode)
	if err != nil {
		return nil, err
	}
	if network == "unix" && c.SocketGroup != "" {
		if err := chgrp(address, c.SocketGroup); err != nil {
			ln.Close()
			return nil, err
		}
	}
	if c.MetricsListen != "" {
		mln, err := net.Listen("tcp", c.MetricsListen)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("daemon: metrics: %w", err)
		}
		d.http = &http.Server{Handler: d.metrics.Handler(d.readiness), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := d.http.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.served <- fmt.Errorf("daemon: metrics: %w", err)
			}
		}()
	}
	// Started last, so that no error path above leaves its workers behind.
	d.notices = notice.New(notice.Options{Log: log, Count: func(r notice.Result) { d.metrics.Noticed(string(r)) }})
	d.milter.SetNotifier(d.notices)
	go func() { d.served <- d.milter.Serve(ln) }()
	d.ready.Store(true)
	for _, w := range c.Warnings {
		log.Warn("config: " + w)
	}
	log.Info("bccguard started", slog.String("listen", d.listen), slog.String("config", c.Name()),
		slog.String("metrics", c.MetricsListen), slog.String("version", o.Version))
	return d, nil
}

// checkSplitStore opens the split records (state_dir/split.db) as the
// service user when c uses split, and says at error level when they
// cannot be used. The daemon starts anyway: refusing to start would make
// Postfix apply milter_default_action to all mail (tempfail stops every
// message, accept hides nothing), while hiding instead of splitting keeps
// every promise but the per-recipient To. docs/reliability.md tells what
// to do.
func (d *Daemon) checkSplitStore(c *config.Config) {
	if err := d.milter.OpenSplitStore(c); err != nil {
		d.log.Error("split records unusable: every message to split is hidden instead until bccguard is restarted with usable records; see docs/reliability.md",
			slog.String("state_dir", c.Split.StateDir), slog.Any("error", err))
	} else if c.Policy != nil && c.Policy.UsesSplit() {
		d.log.Info("split records ready", slog.String("state_dir", c.Split.StateDir))
	}
}

// readiness is what /readyz reports: nil, or why no mail can be served.
func (d *Daemon) readiness() error {
	if !d.ready.Load() {
		return errors.New("not serving (starting or shutting down)")
	}
	return d.milter.Saturated()
}

// Done delivers the error that ends the daemon on its own (a listener
// failing); nil after Shutdown.
func (d *Daemon) Done() <-chan error { return d.served }

// Config returns the config in use.
func (d *Daemon) Config() *config.Config { return d.config.Load() }

// Reload reads the config file again and swaps it in only when all of it
// is valid; sessions in flight keep the snapshot they started with. On a
// bad file every problem is logged and the old config keeps serving.
func (d *Daemon) Reload() error {
	start := time.Now()
	c, err := config.Load(d.file)
	d.metrics.ConfigLoadTook(time.Since(start))
	if err != nil {
		d.metrics.Reloaded(false)
		var ce *config.Error
		if errors.As(err, &ce) {
			for _, p := range ce.Problems {
				d.log.Error("config reload refused; the old config keeps serving", slog.String("problem", p.String()))
			}
		} else {
			d.log.Error("config reload refused; the old config keeps serving", slog.Any("error", err))
		}
		return err
	}
	old := d.config.Load()
	for _, ch := range restartOnly(old, c) {
		d.log.Warn("config: " + ch + " changes only at restart; keeping the running value")
	}
	d.level.Set(c.LogLevel)
	d.checkSplitStore(c)
	d.config.Store(c)
	d.metrics.Reloaded(true)
	for _, w := range c.Warnings {
		d.log.Warn("config: " + w)
	}
	d.log.Info("config reloaded", slog.String("config", c.Name()))
	return nil
}

// restartOnly lists the keys whose change a reload cannot apply: the
// listeners and the log destination are opened once.
func restartOnly(old, c *config.Config) []string {
	var keys []string
	if old.Listen != c.Listen {
		keys = append(keys, "listen")
	}
	if old.SocketMode != c.SocketMode {
		keys = append(keys, "socket_mode")
	}
	if old.SocketGroup != c.SocketGroup {
		keys = append(keys, "socket_group")
	}
	if old.MetricsListen != c.MetricsListen {
		keys = append(keys, "metrics_listen")
	}
	if old.LogOutput != c.LogOutput {
		keys = append(keys, "log_output")
	}
	if old.LogFormat != c.LogFormat {
		keys = append(keys, "log_format")
	}
	return keys
}

// Shutdown stops accepting, waits for sessions in flight until ctx is
// done, then cuts the rest (Postfix applies milter_default_action to
// those messages: with tempfail they wait in the sender's queue).
func (d *Daemon) Shutdown(ctx context.Context) error {
	d.ready.Store(false)
	err := d.milter.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		d.log.Warn("sessions still in flight were cut; Postfix applies milter_default_action to them")
		d.milter.Close()
		err = nil
	}
	// Notices queued by the sessions that just ended go out within what
	// is left of shutdown_timeout; the rest are logged as dropped.
	if nerr := d.notices.Shutdown(ctx); nerr != nil {
		d.log.Warn("notices still queued were dropped", slog.Any("error", nerr))
	}
	if d.http != nil {
		hctx, cancel := context.WithTimeout(context.Background(), time.Second)
		d.http.Shutdown(hctx)
		cancel()
	}
	d.log.Info("bccguard stopped")
	return err
}

func chgrp(path, group string) error {
	gid, err := strconv.Atoi(group)
	if err != nil {
		g, err := user.LookupGroup(group)
		if err != nil {
			return fmt.Errorf("daemon: socket_group: %w", err)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	if err := os.Chown(path, -1, gid); err != nil {
		return fmt.Errorf("daemon: socket_group: %w", err)
	}
	return nil
}
