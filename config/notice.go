package config

import (
	"net/mail"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bccguard/bccguard/notice"
	"github.com/bccguard/bccguard/policy"
)

// buildNotice validates the notice section. The template is read and
// parsed here, so that a broken one stops `config check`, the start and a
// reload, rather than the first notice.
func buildNotice(file string, raw rawNotice, bad func(string, string, ...any)) *notice.Settings {
	n := &notice.Settings{ListRecipients: raw.ListRecipients, MinInterval: raw.MinInterval, Template: notice.Builtin()}
	if from := strings.TrimSpace(raw.From); from != "" {
		a, err := mail.ParseAddress(from)
		if err != nil {
			bad("notice.from", "%q is not an address: %v", from, err)
		} else {
			n.From = *a
		}
	}
	if raw.MinInterval < 0 || raw.MinInterval > 0 && raw.MinInterval < time.Second {
		// A bare number is read as nanoseconds: "600" would be 600ns.
		bad("notice.min_interval", "must be 0s or at least 1s, with a unit (10m, 1h), got %v", raw.MinInterval)
	}
	if name := strings.TrimSpace(raw.Template); name != "" {
		if !filepath.IsAbs(name) && file != "" {
			// Relative to the config file, so that it does not depend on
			// the daemon's working directory.
			name = filepath.Join(filepath.Dir(file), name)
		}
		t, err := notice.LoadTemplate(name)
		if err != nil {
			bad("notice.template", "%v", err)
		} else {
			n.Template = t
		}
	}
	return n
}

// notifyingRule names the first rule in use with notify_sender set, or "".
func notifyingRule(pc *policy.Config) string {
	if !pc.HasDomains {
		if pc.Default.NotifySender {
			return "policy"
		}
		return ""
	}
	for _, r := range pc.Domains {
		if r.Enabled && r.Settings.NotifySender {
			return "domains[" + strconv.Itoa(r.Index) + "]"
		}
	}
	return ""
}

// bareAddress accepts local@domain as RFC 5322 reads it, with no display
// name or angle brackets: these are envelope recipients.
func bareAddress(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Name == "" && a.Address == s && strings.Count(s, "@") == 1
}
