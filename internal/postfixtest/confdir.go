package postfixtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ConfigDir is a private Postfix configuration directory that no Postfix
// runs from: enough for "postconf -c DIR" and the tools that read a
// configuration (postconf works on any directory, running or not), and
// much cheaper than an [Instance].
//
// Its main.cf is the one [Start] writes, with opts.Extra applied; unlike
// an instance's, its master.cf is the system's own, unchanged: chroot
// flags and inet services as the distribution ships them (Debian marks
// smtpd, cleanup and pickup chrooted).
type ConfigDir struct {
	inst *Instance
}

// WriteConfig creates a configuration directory for opts; opts.RelayTo
// may be empty. It is removed when the test ends. It must run as root,
// like [Start], because the queue directory it names belongs to root.
func WriteConfig(t testing.TB, opts Options) *ConfigDir {
	t.Helper()
	sys, err := lookupSystem()
	if err != nil {
		t.Fatalf("postfixtest: cannot use Postfix: %v", err)
	}
	if opts.RelayTo == "" {
		opts.RelayTo = "127.0.0.1:9"
	}
	inst, err := newInstance(sys)
	if inst != nil {
		t.Cleanup(func() { os.RemoveAll(inst.root) })
	}
	if err != nil {
		t.Fatalf("postfixtest: %v", err)
	}
	if err := inst.configure(opts); err != nil {
		t.Fatalf("postfixtest: configure %s: %v", inst.confDir, err)
	}
	master, err := os.ReadFile(filepath.Join(sys.defaultConfDir, "master.cf"))
	if err != nil {
		t.Fatalf("postfixtest: read system master.cf: %v", err)
	}
	if err := os.WriteFile(filepath.Join(inst.confDir, "master.cf"), master, 0o644); err != nil {
		t.Fatalf("postfixtest: write master.cf: %v", err)
	}
	return &ConfigDir{inst: inst}
}

// Dir returns the configuration directory.
func (c *ConfigDir) Dir() string { return c.inst.confDir }

// QueueDir returns the queue_directory main.cf names (the chroot of
// chrooted services); it exists and is empty.
func (c *ConfigDir) QueueDir() string { return c.inst.queueDir }

// Postconf runs postconf -c DIR with args (for example "-e", "name=value"
// or "-Me", "submission/inet=...") and returns its output; an error fails
// the test.
func (c *ConfigDir) Postconf(t testing.TB, args ...string) string {
	t.Helper()
	out, err := c.inst.postconf(args...)
	if err != nil {
		t.Fatalf("postfixtest: postconf -c %s %s: %v", c.inst.confDir, strings.Join(args, " "), err)
	}
	return out
}
