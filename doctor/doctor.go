// Package doctor checks how a live Postfix is wired to bccguard and says
// what would let mail through unconverted: a mail path without the milter,
// milter_default_action = accept, an unqualified $myorigin that no rule
// covers, a milter that does not answer or a socket Postfix cannot open.
//
// It reads Postfix's effective configuration with postconf(1) (main.cf
// expanded, master.cf services with their -o overrides), so that it sees
// what Postfix sees, chroot included.
package doctor

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/bccguard/bccguard/config"
)

// Status is the verdict of one check.
type Status int

const (
	// OK means nothing to do.
	OK Status = iota
	// Warn means worth a look; mail is not known to pass unconverted.
	Warn
	// Fail means some mail passes unconverted, or all mail is held.
	Fail
)

// String returns "ok", "warn" or "FAIL" (upper case to stand out).
func (s Status) String() string {
	switch s {
	case Warn:
		return "warn"
	case Fail:
		return "FAIL"
	}
	return "ok"
}

// Result is one line of the report.
type Result struct {
	Status Status
	// Check names what was checked ("smtpd_milters").
	Check string
	// Message says what was found.
	Message string
	// Fix says in one sentence what to do; empty for OK.
	Fix string
}

// Report is the outcome of all checks, in order.
type Report []Result

// Failed reports whether any check failed.
func (r Report) Failed() bool {
	for _, x := range r {
		if x.Status == Fail {
			return true
		}
	}
	return false
}

// Find returns the results of one check, for tests and callers that
// want one verdict.
func (r Report) Find(check string) Report {
	var out Report
	for _, x := range r {
		if x.Check == check {
			out = append(out, x)
		}
	}
	return out
}

// Worst returns the most severe status in the report (OK when empty).
func (r Report) Worst() Status {
	worst := OK
	for _, x := range r {
		worst = max(worst, x.Status)
	}
	return worst
}

// Write prints one line per result: status, check, what was found, and
// the fix.
func (r Report) Write(w io.Writer) error {
	for _, x := range r {
		line := fmt.Sprintf("%-4s  %s: %s", x.Status, x.Check, x.Message)
		if x.Fix != "" {
			line += " Fix: " + x.Fix
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return nil
}

// Options say what to check.
type Options struct {
	// Config is bccguard's loaded configuration.
	Config *config.Config
	// PostfixDir is Postfix's configuration directory; "" for the
	// default (postconf -h config_directory).
	PostfixDir string
	// Postconf is the postconf command; "" means "postconf" on $PATH.
	Postconf string
	// Timeout bounds connecting to the milter and negotiating, and
	// reading the daemon's version; 0 means 5 seconds.
	Timeout time.Duration
	// Version is this command's version, compared with the running
	// daemon's (read from metrics_listen).
	Version string
}

// env is what every check reads.
type env struct {
	ctx     context.Context
	opts    Options
	cfg     *config.Config
	postfix *Postfix
	listen  endpoint
	paths   []*milterPath
}

// check is one check: it returns one or more lines of the report.
type check func(*env) []Result

// checks run in this order. A check for a new feature is one function
// added here.
var checks = []check{
	checkWiring,
	checkReinject,
	checkMilterMaps,
	checkDefaultAction,
	checkProtocol,
	checkOrigin,
	checkSigningOrder,
	checkSplitOrder,
	checkRecipientAdders,
	checkMilterAnswers,
	checkVersion,
}

// Run reads Postfix's configuration and runs every check. The error is
// for a Postfix that cannot be read at all (postconf missing or failing).
func Run(ctx context.Context, opts Options) (Report, error) {
	if opts.Postconf == "" {
		opts.Postconf = "postconf"
	}
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	pf, err := ReadPostfix(ctx, opts.Postconf, opts.PostfixDir)
	if err != nil {
		return nil, fmt.Errorf("doctor: read Postfix configuration: %w", err)
	}
	listen, err := listenEndpoint(opts.Config.Listen)
	if err != nil {
		return nil, fmt.Errorf("doctor: listen: %w", err)
	}
	e := &env{ctx: ctx, opts: opts, cfg: opts.Config, postfix: pf, listen: listen}
	e.paths = milterPaths(pf, listen)
	r := Report{{Status: OK, Check: "config",
		Message: fmt.Sprintf("bccguard %s, listen %s; Postfix %s in %s", opts.Config.Name(), opts.Config.Listen, pf.Main["mail_version"], pf.Dir)}}
	for _, c := range checks {
		r = append(r, c(e)...)
	}
	return r, nil
}

// joinAnd lists names for a message: "a", "a and b", "a, b and c".
func joinAnd(names []string) string {
	if len(names) <= 1 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}
