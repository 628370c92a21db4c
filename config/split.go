package config

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bccguard/bccguard/policy"
)

// buildSplit validates the split section, and refuses delivery: split
// where it cannot work: without a reinjection service, or with a state
// directory bccguard cannot write (records of what was handed over are
// what keeps a retry from sending second copies).
func (c *Config) buildSplit(file string, raw *rawConfig, bad func(string, string, ...any)) []Problem {
	s := raw.Split
	c.Split = Split{MaxRecipients: s.MaxRecipients, MaxMessageBytes: s.MaxMessageBytes,
		StateDir: strings.TrimSpace(s.StateDir), Retention: s.Retention}
	if s.MaxRecipients < 1 {
		bad("split.max_recipients", "must be 1 or more, got %d", s.MaxRecipients)
	}
	if s.MaxMessageBytes < 1024 {
		bad("split.max_message_bytes", "must be at least 1024, got %d", s.MaxMessageBytes)
	}
	if s.Retention < time.Hour {
		bad("split.retention", "must be at least 1h, with a unit (120h), got %v; keep it at least as long as Postfix's maximal_queue_lifetime", s.Retention)
	}
	if !filepath.IsAbs(c.Split.StateDir) {
		bad("split.state_dir", "%q is not an absolute path", s.StateDir)
	}
	if c.Policy == nil || !c.Policy.UsesSplit() {
		return nil
	}
	where := c.splitRules()
	if c.Reinject.Address == "" {
		bad("reinject.address", "delivery: split (%s) needs the reinjection service: set reinject.address, such as inet:127.0.0.1:10026", where)
	}
	if filepath.IsAbs(c.Split.StateDir) {
		if err := writable(c.Split.StateDir); err != nil {
			bad("split.state_dir", "delivery: split (%s) needs a writable state directory: %v", where, err)
		} else if w := serviceUserCannotWrite(c.Split.StateDir); w != "" {
			c.Warnings = append(c.Warnings, "split.state_dir: "+w)
		}
	}
	return nil
}

// splitRules names the rules that use split, for the error message.
func (c *Config) splitRules() string {
	var keys []string
	if !c.Policy.HasDomains && c.Policy.Default.Delivery == policy.DeliverySplit {
		keys = append(keys, "policy.delivery")
	}
	for _, r := range c.Policy.Domains {
		if r.Enabled && r.Settings.Delivery == policy.DeliverySplit {
			keys = append(keys, fmt.Sprintf("domains[%d]", r.Index))
		}
	}
	if len(keys) > 3 {
		keys = append(keys[:3], fmt.Sprintf("%d more", len(keys)-3))
	}
	return strings.Join(keys, ", ")
}

// ServiceUser is the user the packages run the daemon as.
var ServiceUser = "bccguard"

// serviceUserCannotWrite says, when run as root (config check, an
// install script) and the service user exists, whether that user could
// not create files in dir or open dir/split.db for writing: root passes
// every permission check, and a split.db left root-owned by a test run as
// root would make the daemon hide every message. A warning, not a refusal:
// an admin may run bccguard as root (--allow-root) on purpose; the daemon
// itself reports unusable records at start.
func serviceUserCannotWrite(dir string) string {
	if os.Geteuid() != 0 {
		return ""
	}
	u, err := user.Lookup(ServiceUser)
	if err != nil {
		return ""
	}
	uid, _ := strconv.Atoi(u.Uid)
	gids := map[int]bool{}
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			n, _ := strconv.Atoi(g)
			gids[n] = true
		}
	}
	gid, _ := strconv.Atoi(u.Gid)
	gids[gid] = true
	for _, path := range []string{dir, filepath.Join(dir, "split.db")} {
		fi, err := os.Stat(path)
		if err != nil {
			continue // split.db not made yet: the daemon creates it
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return ""
		}
		perm := fi.Mode().Perm()
		need := os.FileMode(0o2) // write
		if fi.IsDir() {
			need = 0o3 // write and search
		}
		switch {
		case int(st.Uid) == uid && perm>>6&need == need,
			gids[int(st.Gid)] && perm>>3&need == need,
			perm&need == need:
		default:
			return fmt.Sprintf("%s (owner uid %d, gid %d, mode %04o) is not writable by the service user %s: the daemon would hide instead of split; chown -R %s %s",
				path, st.Uid, st.Gid, perm, ServiceUser, ServiceUser, dir)
		}
	}
	return ""
}

// writable checks that dir is a directory in which this process can create
// a file.
func writable(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	f, err := os.CreateTemp(dir, ".bccguard-check-*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
