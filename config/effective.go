package config

import (
	"fmt"

	"go.yaml.in/yaml/v3"

	"github.com/bccguard/bccguard/policy"
)

// effective is the config as it applies, every default filled in, in the
// shape of the file.
func effective(raw *rawConfig, c *Config) map[string]any {
	m := map[string]any{
		"listen":           c.Listen,
		"socket_mode":      fmt.Sprintf("%04o", uint32(c.SocketMode)),
		"socket_group":     c.SocketGroup,
		"shutdown_timeout": c.ShutdownTimeout.String(),
		"log_level":        raw.LogLevel,
		"log_format":       c.LogFormat,
		"log_output":       c.LogOutput,
		"metrics_listen":   c.MetricsListen,
		"reinject": map[string]any{
			"address": c.Reinject.Address,
			"timeout": c.Reinject.Timeout.String(),
		},
		"split": map[string]any{
			"max_recipients":    c.Split.MaxRecipients,
			"max_message_bytes": c.Split.MaxMessageBytes,
			"state_dir":         c.Split.StateDir,
			"retention":         c.Split.Retention.String(),
		},
		"audit": map[string]any{
			// The key is a secret: never printed.
			"recipients": string(c.Audit.Mode),
			"hash_key":   redact(raw.Audit.HashKey),
		},
	}
	if c.Policy == nil {
		return m
	}
	var internal []string
	for _, p := range c.Policy.Internal {
		internal = append(internal, p.String())
	}
	m["internal_domains"] = orEmpty(internal)
	m["policy"] = settingsMap(c.Policy.Default)
	if c.Policy.HasDomains {
		var doms []map[string]any
		for _, r := range c.Policy.Domains {
			d := settingsMap(r.Settings)
			d["domain"] = r.Pattern.String()
			d["enabled"] = r.Enabled
			doms = append(doms, d)
		}
		m["domains"] = doms
	}
	m["exempt_senders"] = orEmpty(raw.ExemptSenders)
	if n := c.Notice; n != nil {
		from := ""
		if n.From.Address != "" {
			from = n.From.String()
		}
		m["notice"] = map[string]any{
			"from":            from,
			"template":        n.Template.File, // resolved against the config file
			"list_recipients": n.ListRecipients,
			"min_interval":    n.MinInterval.String(),
		}
	}
	return m
}

func redact(secret string) string {
	if secret == "" {
		return ""
	}
	return "(set, not shown)"
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func settingsMap(s policy.Settings) map[string]any {
	return map[string]any{
		"threshold":      s.Threshold,
		"count":          string(s.Count),
		"move":           string(s.Move),
		"convert_cc":     s.ConvertCc,
		"replacement":    s.Replacement.String(),
		"on_parse_error": string(s.OnParseError),
		"dry_run":        s.DryRun,
		"stamp_header":   s.StampHeader,
		"delivery":       string(s.Delivery),
		"notify_sender":  s.NotifySender,
		"notify_copy_to": orEmpty(s.NotifyCopyTo),
	}
}

// YAML returns the effective configuration, every default filled in, in
// the format of the config file, for `bccguard config check`.
func (c *Config) YAML() string {
	b, err := yaml.Marshal(c.effective)
	if err != nil {
		// Only plain strings, numbers, booleans, lists and maps are in the
		// map, which always marshal.
		return fmt.Sprintf("# cannot print the effective config: %v\n", err)
	}
	return string(b)
}
