// Package config loads and validates bccguard's YAML configuration with
// viper and turns it into an immutable snapshot.
//
// Every problem in a file is collected and reported at once, each naming
// the file and the key path ("domains[2].threshold"), so that an admin can
// fix a file in one go. A Config is never modified after Load returns:
// reloads build a new one and swap it in whole.
package config

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/bccguard/bccguard/audit"
	"github.com/bccguard/bccguard/notice"
	"github.com/bccguard/bccguard/policy"
)

// DefaultListen is the listener used when the config does not name one:
// loopback only, because the milter protocol has no authentication.
const DefaultListen = "inet:127.0.0.1:10030"

// Config is a validated, immutable configuration snapshot.
type Config struct {
	// File is the file it was loaded from; empty for built-in defaults.
	File string
	// Listen is the milter address in Postfix syntax.
	Listen string
	// SocketMode is the file mode of a unix socket.
	SocketMode os.FileMode
	// SocketGroup is the group given to a unix socket; "" keeps the
	// process's group.
	SocketGroup string
	// ShutdownTimeout bounds how long sessions in flight may take to
	// finish after SIGTERM.
	ShutdownTimeout time.Duration
	// LogLevel is the lowest level logged; a reload may change it.
	LogLevel slog.Level
	// LogFormat is "text" or "json".
	LogFormat string
	// LogOutput is "stderr" (for journald) or "syslog" (facility mail).
	LogOutput string
	// Audit says how addresses appear in the audit log.
	Audit audit.Options
	// MetricsListen is the HOST:PORT of the metrics and health endpoints;
	// "" turns them off.
	MetricsListen string
	// Reinject is where and how copies are handed back to Postfix.
	Reinject Reinject
	// Split bounds and records delivery: split.
	Split Split
	// Policy is the decision config shared by the daemon and `check`.
	Policy *policy.Config
	// Notice is the notice section: how senders are told about a
	// conversion when their rule has notify_sender.
	Notice *notice.Settings
	// Warnings are problems that do not stop the daemon but that an admin
	// should hear about at startup.
	Warnings []string

	effective map[string]any
}

// Reinject says where bccguard hands messages back to Postfix: a smtpd
// service on loopback that does not run bccguard.
type Reinject struct {
	// Address is "inet:HOST:PORT" or "unix:/path"; "" means none.
	Address string
	// Timeout bounds each SMTP command.
	Timeout time.Duration
}

// Split holds the limits and the state of delivery: split.
type Split struct {
	// MaxRecipients is the most copies of one message; above, hide.
	MaxRecipients int
	// MaxMessageBytes is the largest message split; above, hide.
	MaxMessageBytes int64
	// StateDir holds the records of copies handed over, and bodies being
	// split that are too large for memory.
	StateDir string
	// Retention is how long records are kept.
	Retention time.Duration
}

// Name returns the config file, or "built-in defaults".
func (c *Config) Name() string {
	if c.File == "" {
		return "built-in defaults"
	}
	return c.File
}

// Problem is one thing wrong with a config file.
type Problem struct {
	// File is the config file, or "environment VAR" for a value from the
	// environment.
	File string
	// Key is the key path, such as "policy.threshold" or "domains[1].domain".
	Key string
	// Msg says what is wrong.
	Msg string
}

// String formats the problem as "FILE: KEY: MESSAGE".
func (p Problem) String() string {
	file := p.File
	if file == "" {
		file = "(built-in defaults and environment)"
	}
	if p.Key == "" {
		return file + ": " + p.Msg
	}
	return file + ": " + p.Key + ": " + p.Msg
}

// Error lists every problem found in one config; the daemon does not start
// (or a reload is refused) when Load returns one.
type Error struct {
	// Problems are sorted by key.
	Problems []Problem
}

// Error lists every problem, one per line.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return fmt.Sprintf("config: %d problem(s):\n  %s", len(lines), strings.Join(lines, "\n  "))
}

// ParseListen splits a Postfix-style milter address into a network and an
// address for net.Listen: "inet:HOST:PORT" or "unix:/path".
func ParseListen(s string) (network, address string, err error) {
	kind, rest, ok := strings.Cut(s, ":")
	switch {
	case !ok:
	case kind == "unix" || kind == "local":
		if !strings.HasPrefix(rest, "/") {
			return "", "", fmt.Errorf("%q: unix socket path must be absolute", s)
		}
		return "unix", rest, nil
	case kind == "inet" || kind == "inet6":
		host, port, err := splitHostPort(rest)
		if err != nil {
			return "", "", fmt.Errorf("%q: %w", s, err)
		}
		return "tcp", net.JoinHostPort(host, port), nil
	}
	return "", "", fmt.Errorf("%q is not inet:HOST:PORT or unix:/path", s)
}
