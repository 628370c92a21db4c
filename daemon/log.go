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

// NewLogger builds the logger the config asks for. The level can be
// changed later through the returned LevelVar (a reload does that).
func NewLogger(c *config.Config, stderr io.Writer) (*slog.Logger, *slog.LevelVar, error) {
	return newLogger(c, stderr, func() (*syslog.Writer, error) {
		return syslog.New(syslog.LOG_MAIL|syslog.LOG_INFO, syslogTag)
	})
}

// newLogger is NewLogger with the syslog connection given, so that tests
// can point it at a socket of their own.
func newLogger(c *config.Config, stderr io.Writer, dialSyslog func() (*syslog.Writer, error)) (*slog.Logger, *slog.LevelVar, error) {
	level := new(slog.LevelVar)
	level.Set(c.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	if c.LogOutput != "syslog" {
		return slog.New(newHandler(stderr, c.LogFormat, opts)), level, nil
	}
	w, err := dialSyslog()
	if err != nil {
		// Debian 12 and RHEL 9 install no syslog daemon by default: the
		// journal has the logs, and /dev/log may lead nowhere.
		return nil, nil, fmt.Errorf("daemon: log_output syslog needs a syslog daemon listening on /dev/log "+
			"(install rsyslog, or set log_output: stderr, which systemd sends to the journal): %w", err)
	}
	// syslog stamps the time itself.
	opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	out := &syslogOut{w: w}
	return slog.New(&syslogHandler{Handler: newHandler(&out.buf, c.LogFormat, opts), out: out}), level, nil
}

func newHandler(w io.Writer, format string, opts *slog.HandlerOptions) slog.Handler {
	if format == "json" {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}

// syslogOut is the buffer the formatting handler writes one record into,
// and the syslog connection it goes to.
type syslogOut struct {
	mu  sync.Mutex
	buf bytes.Buffer
	w   *syslog.Writer
}

// syslogHandler formats a record like the stderr handler and sends it with
// the syslog priority of its level, so that errors are mail.err and not
// mail.info. Attributes and groups are the embedded handler's.
type syslogHandler struct {
	slog.Handler
	out *syslogOut
}

func (h *syslogHandler) Handle(ctx context.Context, r slog.Record) error {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.out.buf.Reset()
	if err := h.Handler.Handle(ctx, r); err != nil {
		return err
	}
	line := strings.TrimSuffix(h.out.buf.String(), "\n")
	switch {
	case r.Level >= slog.LevelError:
		return h.out.w.Err(line)
	case r.Level >= slog.LevelWarn:
		return h.out.w.Warning(line)
	case r.Level >= slog.LevelInfo:
		return h.out.w.Info(line)
	}
	return h.out.w.Debug(line)
}

func (h *syslogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &syslogHandler{Handler: h.Handler.WithAttrs(as), out: h.out}
}

func (h *syslogHandler) WithGroup(name string) slog.Handler {
	return &syslogHandler{Handler: h.Handler.WithGroup(name), out: h.out}
}
