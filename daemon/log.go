package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"strings"
	"sync"

	"github.com/bccguard/bccguard/config"
)

// syslogTag and the mail facility put bccguard's lines into mail.log next
// to Postfix's own.
const syslogTag = "bccguard"

// dialSyslog opens the local syslog; tests point it at their own socket.
var dialSyslog = func() (*syslog.Writer, error) {
	return syslog.New(syslog.LOG_MAIL|syslog.LOG_INFO, syslogTag)
}

// NewLogger builds the logger the config asks for. The level can be
// changed later through the returned LevelVar (a reload does that).
func NewLogger(c *config.Config, stderr io.Writer) (*slog.Logger, *slog.LevelVar, error) {
	level := new(slog.LevelVar)
	level.Set(c.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	if c.LogOutput == "syslog" {
		w, err := dialSyslog()
		if err != nil {
			return nil, nil, fmt.Errorf("daemon: log_output syslog: %w", err)
		}
		// syslog stamps the time itself.
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
		return slog.New(&syslogHandler{w: w, format: c.LogFormat, opts: opts}), level, nil
	}
	return slog.New(newHandler(stderr, c.LogFormat, opts)), level, nil
}

func newHandler(w io.Writer, format string, opts *slog.HandlerOptions) slog.Handler {
	if format == "json" {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}

// syslogHandler formats a record like the stderr handler and sends it with
// the syslog priority of its level, so that errors are mail.err and not
// mail.info.
type syslogHandler struct {
	w      *syslog.Writer
	format string
	opts   *slog.HandlerOptions
	attrs  []slog.Attr
	group  string
	mu     sync.Mutex
}

func (h *syslogHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.opts.Level.Level()
}

func (h *syslogHandler) Handle(ctx context.Context, r slog.Record) error {
	var buf bytes.Buffer
	var inner slog.Handler = newHandler(&buf, h.format, h.opts)
	if len(h.attrs) > 0 {
		inner = inner.WithAttrs(h.attrs)
	}
	if h.group != "" {
		inner = inner.WithGroup(h.group)
	}
	if err := inner.Handle(ctx, r); err != nil {
		return err
	}
	line := strings.TrimSuffix(buf.String(), "\n")
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case r.Level >= slog.LevelError:
		return h.w.Err(line)
	case r.Level >= slog.LevelWarn:
		return h.w.Warning(line)
	case r.Level >= slog.LevelInfo:
		return h.w.Info(line)
	}
	return h.w.Debug(line)
}

func (h *syslogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &syslogHandler{w: h.w, format: h.format, opts: h.opts, attrs: append(append([]slog.Attr(nil), h.attrs...), as...), group: h.group}
}

func (h *syslogHandler) WithGroup(name string) slog.Handler {
	return &syslogHandler{w: h.w, format: h.format, opts: h.opts, attrs: h.attrs, group: name}
}
