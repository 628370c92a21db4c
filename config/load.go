package config

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/bccguard/bccguard/audit"
	"github.com/bccguard/bccguard/policy"
)

// EnvPrefix is the prefix of environment overrides: BCCGUARD_LISTEN,
// BCCGUARD_POLICY_THRESHOLD and so on.
const EnvPrefix = "BCCGUARD"

// rawPolicy holds the policy keys as written; nil means "not set here", so
// that a domains entry inherits the value from the policy section.
type rawPolicy struct {
	Threshold    *int    `mapstructure:"threshold"`
	Count        *string `mapstructure:"count"`
	Move         *string `mapstructure:"move"`
	ConvertCc    *bool   `mapstructure:"convert_cc"`
	Replacement  *string `mapstructure:"replacement"`
	OnParseError *string `mapstructure:"on_parse_error"`
	DryRun       *bool   `mapstructure:"dry_run"`
	StampHeader  *string `mapstructure:"stamp_header"`
	Delivery     *string `mapstructure:"delivery"`

	// Notices to senders (package notice).
	NotifySender *bool     `mapstructure:"notify_sender"`
	NotifyCopyTo *[]string `mapstructure:"notify_copy_to"`
}

// rawDomain is one entry of the domains list. Domains are a list and never
// map keys, because viper splits keys at dots.
type rawDomain struct {
	Domain    string `mapstructure:"domain"`
	Enabled   *bool  `mapstructure:"enabled"`
	rawPolicy `mapstructure:",squash"`
}

type rawAudit struct {
	Recipients string `mapstructure:"recipients"`
	HashKey    string `mapstructure:"hash_key"`
}

type rawNotice struct {
	From           string        `mapstructure:"from"`
	Template       string        `mapstructure:"template"`
	ListRecipients bool          `mapstructure:"list_recipients"`
	MinInterval    time.Duration `mapstructure:"min_interval"`
}

type rawReinject struct {
	Address string        `mapstructure:"address"`
	Timeout time.Duration `mapstructure:"timeout"`
}

type rawSplit struct {
	MaxRecipients   int           `mapstructure:"max_recipients"`
	MaxMessageBytes int64         `mapstructure:"max_message_bytes"`
	StateDir        string        `mapstructure:"state_dir"`
	Retention       time.Duration `mapstructure:"retention"`
}

type rawConfig struct {
	Listen          string        `mapstructure:"listen"`
	SocketMode      any           `mapstructure:"socket_mode"`
	SocketGroup     string        `mapstructure:"socket_group"`
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`
	LogLevel        string        `mapstructure:"log_level"`
	LogFormat       string        `mapstructure:"log_format"`
	LogOutput       string        `mapstructure:"log_output"`
	Audit           rawAudit      `mapstructure:"audit"`
	MetricsListen   string        `mapstructure:"metrics_listen"`
	Reinject        rawReinject   `mapstructure:"reinject"`
	Split           rawSplit      `mapstructure:"split"`
	InternalDomains []string      `mapstructure:"internal_domains"`
	Policy          rawPolicy     `mapstructure:"policy"`
	Domains         []rawDomain   `mapstructure:"domains"`
	ExemptSenders   []string      `mapstructure:"exempt_senders"`
	Notice          rawNotice     `mapstructure:"notice"`
}

// defaults returns the built-in values; every key is listed so that viper
// knows it and an environment variable can override it. The policy values
// come from policy.DefaultSettings, the one place they are defined.
func defaults() map[string]any {
	p := policy.DefaultSettings()
	return map[string]any{
		"listen":                  DefaultListen,
		"socket_mode":             "0660",
		"socket_group":            "",
		"shutdown_timeout":        "10s",
		"log_level":               "info",
		"log_format":              "text",
		"log_output":              "stderr",
		"audit.recipients":        "domain",
		"audit.hash_key":          "",
		"metrics_listen":          "",
		"reinject.address":        "",
		"reinject.timeout":        "30s",
		"split.max_recipients":    100,
		"split.max_message_bytes": 10 << 20,
		"split.state_dir":         "/var/lib/bccguard",
		"split.retention":         "120h",
		"internal_domains":        []string{},
		"exempt_senders":          []string{},
		"policy.threshold":        p.Threshold,
		"policy.count":            string(p.Count),
		"policy.move":             string(p.Move),
		"policy.convert_cc":       p.ConvertCc,
		"policy.replacement":      p.Replacement.String(),
		"policy.on_parse_error":   string(p.OnParseError),
		"policy.dry_run":          p.DryRun,
		"policy.stamp_header":     p.StampHeader,
		"policy.delivery":         string(p.Delivery),

		// Notices to senders (package notice).
		"policy.notify_sender":   p.NotifySender,
		"policy.notify_copy_to":  []string{},
		"notice.from":            "",
		"notice.template":        "",
		"notice.list_recipients": false,
		"notice.min_interval":    "10m",
	}
}

// Load reads and validates a config file; file "" means built-in defaults
// plus environment overrides. On any problem it returns an *Error listing
// all of them, and no Config.
func Load(file string) (*Config, error) {
	v := viper.New()
	for k, val := range defaults() {
		v.SetDefault(k, val)
	}
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	if file != "" {
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, &Error{Problems: []Problem{{File: file, Msg: readError(err)}}}
		}
	}
	var raw rawConfig
	var problems []Problem
	err := v.UnmarshalExact(&raw, func(dc *mapstructure.DecoderConfig) {
		// WeaklyTypedInput lets environment strings ("3", "true") fill
		// typed keys; YAML already has the right types.
		dc.WeaklyTypedInput = true
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
			wholeNumbers,
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","))
	})
	if err != nil {
		problems = append(problems, decodeProblems(file, err)...)
	}
	if os.Getenv(EnvPrefix+"_DOMAINS") != "" {
		// A list of entries cannot be written as one variable, and viper
		// would see the key as set while decoding nothing from it.
		problems = append(problems, Problem{File: "environment " + EnvPrefix + "_DOMAINS", Key: "domains",
			Msg: "cannot be set from the environment; list the entries in the config file"})
	}
	c := &Config{File: file}
	problems = append(problems, c.build(file, &raw, v.InConfig("domains") && v.Get("domains") != nil)...)
	if len(problems) > 0 {
		sort.SliceStable(problems, func(i, j int) bool { return problems[i].Key < problems[j].Key })
		return nil, &Error{Problems: problems}
	}
	return c, nil
}

// wholeNumbers refuses a fraction where an integer is wanted: weak typing
// would turn "threshold: 2.7" into 2 without a word.
func wholeNumbers(from, to reflect.Type, data any) (any, error) {
	if f, ok := data.(float64); ok && to.Kind() == reflect.Int && f != math.Trunc(f) {
		return nil, fmt.Errorf("%v is not a whole number", f)
	}
	return data, nil
}

func readError(err error) string {
	var nf viper.ConfigFileNotFoundError
	if errors.As(err, &nf) || errors.Is(err, os.ErrNotExist) {
		return "cannot read the file: " + err.Error()
	}
	return "cannot parse the file as YAML: " + err.Error()
}

// decodeProblems turns mapstructure's joined errors into one Problem per
// key, so that unknown keys and wrong types are named like every other
// problem.
func decodeProblems(file string, err error) []Problem {
	var out []Problem
	var walk func(error)
	walk = func(err error) {
		if de, ok := err.(*mapstructure.DecodeError); ok {
			msg := de.Unwrap().Error()
			if keys, ok := strings.CutPrefix(msg, "has invalid keys: "); ok {
				for _, k := range strings.Split(keys, ", ") {
					out = append(out, Problem{File: file, Key: joinKey(de.Name(), k), Msg: "unknown key"})
				}
				return
			}
			out = append(out, Problem{File: source(file, de.Name()), Key: de.Name(), Msg: "wrong type: " + msg})
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		default:
			out = append(out, Problem{File: file, Msg: err.Error()})
		}
	}
	walk(err)
	return out
}

func joinKey(parent, k string) string {
	if parent == "" {
		return k
	}
	return parent + "." + k
}

// build validates raw and fills c, returning every problem found.
func (c *Config) build(file string, raw *rawConfig, hasDomains bool) []Problem {
	var problems []Problem
	bad := func(key, format string, args ...any) {
		problems = append(problems, Problem{File: source(file, key), Key: key, Msg: fmt.Sprintf(format, args...)})
	}

	c.Listen = raw.Listen
	if _, _, err := ParseListen(raw.Listen); err != nil {
		bad("listen", "%v", err)
	}
	socketMode, err := parseSocketMode(raw.SocketMode)
	if err != nil {
		bad("socket_mode", "%v", err)
	}
	c.SocketMode = socketMode
	if w := listenWarning(raw.Listen); w != "" {
		c.Warnings = append(c.Warnings, w)
	}
	switch strings.ToLower(raw.LogLevel) {
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "info":
		c.LogLevel = slog.LevelInfo
	case "warn", "warning":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	default:
		bad("log_level", "%q is not one of debug, info, warn, error", raw.LogLevel)
	}
	c.LogFormat = strings.ToLower(raw.LogFormat)
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("log_format", "%q is not one of text, json", raw.LogFormat)
	}
	c.LogOutput = strings.ToLower(raw.LogOutput)
	if c.LogOutput != "stderr" && c.LogOutput != "syslog" {
		bad("log_output", "%q is not one of stderr, syslog", raw.LogOutput)
	}
	c.SocketGroup = strings.TrimSpace(raw.SocketGroup)
	c.ShutdownTimeout = raw.ShutdownTimeout
	if c.ShutdownTimeout < time.Second {
		// A bare number is read as nanoseconds: "10" would be 10ns.
		bad("shutdown_timeout", "must be at least 1s, with a unit (10s, 1m), got %v", raw.ShutdownTimeout)
	}
	auditMode, err := audit.ParseMode(raw.Audit.Recipients)
	if err != nil {
		bad("audit.recipients", "%v", err)
	}
	c.Audit = audit.Options{Mode: auditMode}
	if auditMode == audit.ModeHash {
		if len(raw.Audit.HashKey) < 16 {
			bad("audit.hash_key", "recipients: hash needs a secret hash_key of at least 16 characters (or BCCGUARD_AUDIT_HASH_KEY)")
		}
		c.Audit.HashKey = []byte(raw.Audit.HashKey)
	}
	c.MetricsListen = strings.TrimSpace(raw.MetricsListen)
	if c.MetricsListen != "" {
		if _, _, err := splitHostPort(c.MetricsListen); err != nil {
			bad("metrics_listen", "%q: %v (use HOST:PORT, or \"\" for off)", c.MetricsListen, err)
		}
	}

	c.Reinject = Reinject{Address: strings.TrimSpace(raw.Reinject.Address), Timeout: raw.Reinject.Timeout}
	if c.Reinject.Address != "" {
		if _, _, err := ParseListen(c.Reinject.Address); err != nil {
			bad("reinject.address", "%v (the Postfix smtpd service without bccguard, such as inet:127.0.0.1:10026; \"\" for none)", err)
		}
	}
	// At most a minute: a split waits up to this long for the reply to a
	// copy's final dot past its time budget, and budget plus reply must
	// stay inside Postfix's milter_content_timeout (milter.splitBudget).
	if c.Reinject.Timeout < time.Second || c.Reinject.Timeout > time.Minute {
		bad("reinject.timeout", "must be from 1s to 1m, with a unit (30s, 1m), got %v", raw.Reinject.Timeout)
	}

	pc := &policy.Config{HasDomains: hasDomains, ExemptSenders: map[string]bool{}}
	for i, d := range raw.InternalDomains {
		p, err := policy.ParseDomainPattern(d)
		if err != nil {
			bad(fmt.Sprintf("internal_domains[%d]", i), "%v", err)
			continue
		}
		pc.Internal = append(pc.Internal, p)
	}
	pc.Default = mergeSettings(policy.Settings{}, raw.Policy, "policy", bad)
	seen := map[string]int{}
	for i, rd := range raw.Domains {
		key := fmt.Sprintf("domains[%d]", i)
		if strings.TrimSpace(rd.Domain) == "" {
			bad(key+".domain", "missing: every entry needs a domain")
			continue
		}
		p, err := policy.ParseDomainPattern(rd.Domain)
		if err != nil {
			bad(key+".domain", "%v", err)
			continue
		}
		if j, dup := seen[p.String()]; dup {
			bad(key+".domain", "%s is already listed as domains[%d]", p, j)
			continue
		}
		seen[p.String()] = i
		rule := policy.DomainRule{Index: i, Pattern: p, Enabled: rd.Enabled == nil || *rd.Enabled}
		rule.Settings = mergeSettings(pc.Default, rd.rawPolicy, key, bad)
		pc.Domains = append(pc.Domains, rule)
	}
	for i, s := range raw.ExemptSenders {
		s = strings.TrimSpace(s)
		at := strings.LastIndexByte(s, '@')
		if at <= 0 || at == len(s)-1 || strings.Count(s, "@") != 1 || strings.ContainsAny(s, " <>,") {
			bad(fmt.Sprintf("exempt_senders[%d]", i), "%q is not an envelope sender address (local@domain)", s)
			continue
		}
		pc.ExemptSenders[strings.ToLower(s)] = true
	}
	c.Policy = pc
	c.Notice = buildNotice(file, raw.Notice, bad)
	if rule := notifyingRule(pc); rule != "" {
		c.Notice.Used = true
		if c.Notice.From.Address == "" {
			bad("notice.from", "required: %s.notify_sender is true and notices need a From address", rule)
		}
		if c.Reinject.Address == "" {
			bad("reinject.address", "required: %s.notify_sender is true and notices are handed to Postfix's reinjection service (see docs/install.md)", rule)
		}
	}
	problems = append(problems, c.buildSplit(file, raw, bad)...)

	switch {
	case hasDomains && len(pc.Domains) == 0 && len(problems) == 0:
		c.Warnings = append(c.Warnings, "domains is empty: no sender is checked and bccguard changes nothing")
	case !hasDomains && len(pc.Internal) == 0:
		c.Warnings = append(c.Warnings, "neither domains nor internal_domains is set: every sender is checked and every recipient counts as external")
	}
	c.effective = effective(raw, c)
	return problems
}

// mergeSettings lays the keys set in r over base; the policy section is
// merged over zero settings, with every key present thanks to defaults.
func mergeSettings(base policy.Settings, r rawPolicy, prefix string, bad func(string, string, ...any)) policy.Settings {
	s := base
	if r.Threshold != nil {
		s.Threshold = *r.Threshold
		if s.Threshold < 1 {
			bad(prefix+".threshold", "must be 1 or more, got %d", s.Threshold)
		}
	}
	if r.Count != nil {
		s.Count = policy.CountMode(strings.ToLower(*r.Count))
		if s.Count != policy.CountAll && s.Count != policy.CountExternal && s.Count != policy.CountDomains {
			bad(prefix+".count", "%q is not one of all, external, domains", *r.Count)
		}
	}
	if r.Move != nil {
		s.Move = policy.MoveMode(strings.ToLower(*r.Move))
		if s.Move != policy.MoveAll && s.Move != policy.MoveExternal {
			bad(prefix+".move", "%q is not one of all, external", *r.Move)
		}
	}
	if r.ConvertCc != nil {
		s.ConvertCc = *r.ConvertCc
	}
	if r.Replacement != nil {
		rep, err := policy.ParseReplacement(*r.Replacement)
		if err != nil {
			bad(prefix+".replacement", "%v", err)
		}
		s.Replacement = rep
	}
	if r.OnParseError != nil {
		s.OnParseError = policy.ParseErrorAction(strings.ToLower(*r.OnParseError))
		switch s.OnParseError {
		case policy.ParseErrorHide, policy.ParseErrorTempfail, policy.ParseErrorAccept:
		default:
			bad(prefix+".on_parse_error", "%q is not one of hide, tempfail, accept", *r.OnParseError)
		}
	}
	if r.DryRun != nil {
		s.DryRun = *r.DryRun
	}
	if r.NotifySender != nil {
		s.NotifySender = *r.NotifySender
	}
	if r.NotifyCopyTo != nil {
		s.NotifyCopyTo = nil
		for i, a := range *r.NotifyCopyTo {
			a = strings.TrimSpace(a)
			if !bareAddress(a) {
				bad(fmt.Sprintf("%s.notify_copy_to[%d]", prefix, i), "%q is not an address (local@domain, without a name or angle brackets)", a)
				continue
			}
			s.NotifyCopyTo = append(s.NotifyCopyTo, a)
		}
	}
	if r.Delivery != nil {
		s.Delivery = policy.DeliveryMode(strings.ToLower(*r.Delivery))
		if s.Delivery != policy.DeliveryHide && s.Delivery != policy.DeliverySplit {
			bad(prefix+".delivery", "%q is not one of hide, split", *r.Delivery)
		}
	}
	if r.StampHeader != nil {
		s.StampHeader = strings.TrimSpace(*r.StampHeader)
		if !validHeaderName(s.StampHeader) {
			bad(prefix+".stamp_header", "%q is not a header field name (printable ASCII, no space or colon)", *r.StampHeader)
		} else if s.StampHeader != "" && !strings.HasPrefix(strings.ToLower(s.StampHeader), "x-") {
			// An added To, Bcc or Content-Type would change how the
			// message is delivered or read: only private X- fields.
			bad(prefix+".stamp_header", "%q is not an X- field; use a name of your own such as X-BCCGuard", *r.StampHeader)
		}
	}
	return s
}

// source names where a key's value came from: the environment variable
// when one is set for it (viper lets it win over the file), else the file.
func source(file, key string) string {
	if !strings.ContainsAny(key, "[]") {
		env := EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
		if os.Getenv(env) != "" {
			return "environment " + env
		}
	}
	return file
}

func validHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f || s[i] == ':' {
			return false
		}
	}
	return true
}

// parseSocketMode accepts the mode as a quoted octal string ("0660") and as
// an unquoted YAML number: yaml.v3 already reads 0660 as octal (432).
func parseSocketMode(v any) (os.FileMode, error) {
	var m uint64
	switch x := v.(type) {
	case string:
		n, err := strconv.ParseUint(strings.TrimSpace(x), 8, 32)
		if err != nil {
			return 0, fmt.Errorf("%q is not an octal file mode such as \"0660\"", x)
		}
		m = n
	case int:
		if x < 0 {
			return 0, fmt.Errorf("%d is not a file mode", x)
		}
		m = uint64(x)
	default:
		return 0, fmt.Errorf("%v is not an octal file mode such as \"0660\"", v)
	}
	if m > 0o777 {
		return 0, fmt.Errorf("%#o has bits beyond 0777", m)
	}
	return os.FileMode(m), nil
}

func splitHostPort(hp string) (string, string, error) {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return "", "", err
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	if host == "" {
		return "", "", errors.New("host is empty (use 127.0.0.1 for loopback)")
	}
	return host, port, nil
}

// listenWarning warns about a TCP listener that is reachable from other
// hosts: the milter protocol has no authentication, and anyone who can
// connect can see headers pass by.
func listenWarning(listen string) string {
	network, address, err := ParseListen(listen)
	if err != nil || network != "tcp" {
		return ""
	}
	host, _, _ := net.SplitHostPort(address)
	if host == "localhost" {
		return ""
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return ""
	}
	return fmt.Sprintf("listen %s is not a loopback address: the milter protocol has no authentication; restrict it with a firewall or use 127.0.0.1 or a unix socket", listen)
}
