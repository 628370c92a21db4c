package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bccguard/bccguard/policy"
)

func TestLoadDefaults(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != DefaultListen || c.SocketMode != 0o660 || c.LogFormat != "text" {
		t.Fatalf("defaults: %+v", c)
	}
	if got := c.Policy.Default; !reflect.DeepEqual(got, policy.DefaultSettings()) {
		t.Fatalf("policy defaults = %+v, want %+v", got, policy.DefaultSettings())
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "every sender") {
		t.Fatalf("warnings = %q", c.Warnings)
	}
}

func TestLoadCity(t *testing.T) {
	c, err := Load("testdata/city.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := c.Policy
	if !p.HasDomains || len(p.Domains) != 4 || len(p.Internal) != 2 {
		t.Fatalf("policy = %+v", p)
	}
	if p.Domains[2].Settings.Threshold != 3 || p.Domains[2].Settings.Count != policy.CountAll {
		t.Fatalf("board override not merged: %+v", p.Domains[2].Settings)
	}
	if p.Domains[3].Enabled || !p.Domains[0].Enabled {
		t.Fatal("enabled flags wrong")
	}
	if !p.ExemptSenders["mailer@city.example.jp"] || len(c.Warnings) != 0 {
		t.Fatalf("exempt=%v warnings=%q", p.ExemptSenders, c.Warnings)
	}
	checkEffectiveLoads(t, c)
}

// checkEffectiveLoads: the effective config must load again to the same
// thing.
func checkEffectiveLoads(t *testing.T, c *Config) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "effective.yaml")
	if err := os.WriteFile(f, []byte(c.YAML()), 0o600); err != nil {
		t.Fatal(err)
	}
	c2, err := Load(f)
	if err != nil {
		t.Fatalf("effective config does not load: %v\n%s", err, c.YAML())
	}
	if c2.YAML() != c.YAML() {
		t.Fatalf("effective config changed on reload:\n%s\n---\n%s", c.YAML(), c2.YAML())
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	_, err := Load("testdata/bad.yaml")
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *Error", err)
	}
	want := []string{
		"listen", "socket_mode", "log_level", "internal_domains[1]",
		"policy.threshold", "policy.move", "policy.thresold", "policy.replacement",
		"domains[0].count", "domains[1].domain", "domains[2].domain", "domains[3].enabled",
		"exempt_senders[0]", "colour",
	}
	got := map[string]string{}
	for _, p := range ce.Problems {
		if p.File != "testdata/bad.yaml" {
			t.Errorf("problem without the file name: %+v", p)
		}
		got[p.Key] = p.Msg
	}
	for _, k := range want {
		if _, ok := got[k]; !ok {
			t.Errorf("no problem reported for %s", k)
		}
	}
	if t.Failed() {
		t.Log(err)
	}
	if got["policy.thresold"] != "unknown key" || got["colour"] != "unknown key" {
		t.Errorf("unknown keys: %q %q", got["policy.thresold"], got["colour"])
	}
}

func TestLoadSyntaxError(t *testing.T) {
	_, err := Load("testdata/syntax.yaml")
	if err == nil || !strings.Contains(err.Error(), "testdata/syntax.yaml") || !strings.Contains(err.Error(), "YAML") {
		t.Fatalf("err = %v", err)
	}
	_, err = Load("testdata/missing.yaml")
	if err == nil || !strings.Contains(err.Error(), "testdata/missing.yaml") {
		t.Fatalf("err = %v", err)
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	t.Setenv("BCCGUARD_POLICY_THRESHOLD", "5")
	t.Setenv("BCCGUARD_LISTEN", "unix:/run/bccguard/bccguard.sock")
	t.Setenv("BCCGUARD_INTERNAL_DOMAINS", "a.example,.a.example")
	c, err := Load("testdata/city.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Policy.Default.Threshold != 5 || c.Listen != "unix:/run/bccguard/bccguard.sock" || len(c.Policy.Internal) != 2 || c.Policy.Internal[0].Domain != "a.example" {
		t.Fatalf("env not applied: listen=%s threshold=%d internal=%v", c.Listen, c.Policy.Default.Threshold, c.Policy.Internal)
	}
	t.Setenv("BCCGUARD_POLICY_THRESHOLD", "many")
	if _, err := Load(""); err == nil || !strings.Contains(err.Error(), "policy.threshold") {
		t.Fatalf("bad env value: err = %v", err)
	}
}

func TestSocketModeUnquoted(t *testing.T) {
	f := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(f, []byte("socket_mode: 0640\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	if c.SocketMode != 0o640 {
		t.Fatalf("socket_mode = %o", c.SocketMode)
	}
}

func TestParseListen(t *testing.T) {
	for in, want := range map[string]string{
		"inet:127.0.0.1:10030":    "tcp 127.0.0.1:10030",
		"inet:[::1]:10030":        "tcp [::1]:10030",
		"unix:/run/bccguard.sock": "unix /run/bccguard.sock",
		"inet:127.0.0.1":          "error",
		"unix:relative.sock":      "error",
		"127.0.0.1:10030":         "error",
		"inet:localhost:0":        "error",
	} {
		n, a, err := ParseListen(in)
		got := n + " " + a
		if err != nil {
			got = "error"
		}
		if got != want {
			t.Errorf("ParseListen(%q) = %q (%v), want %q", in, got, err, want)
		}
	}
}

func TestMoreProblems(t *testing.T) {
	f := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(f, []byte("shutdown_timeout: 10\npolicy:\n  threshold: 2.7\n  stamp_header: To\nexempt_senders: ['@city.example.jp', 'a@b@c.example']\ndomains:\n  - domain: '*.city.example.jp'\n"), 0o600)
	_, err := Load(f)
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v", err)
	}
	got := map[string]bool{}
	for _, p := range ce.Problems {
		got[p.Key] = true
	}
	for _, k := range []string{"shutdown_timeout", "policy.threshold", "policy.stamp_header", "exempt_senders[0]", "exempt_senders[1]", "domains[0].domain"} {
		if !got[k] {
			t.Errorf("no problem for %s in\n%v", k, err)
		}
	}
}

func TestDomainsFromEnvironmentRefused(t *testing.T) {
	t.Setenv("BCCGUARD_DOMAINS", "x.example")
	_, err := Load("")
	if err == nil || !strings.Contains(err.Error(), "environment BCCGUARD_DOMAINS") {
		t.Fatalf("err = %v", err)
	}
}

func TestEnvironmentProblemNamesTheVariable(t *testing.T) {
	t.Setenv("BCCGUARD_POLICY_MOVE", "sideways")
	_, err := Load("testdata/city.yaml")
	if err == nil || !strings.Contains(err.Error(), "environment BCCGUARD_POLICY_MOVE: policy.move") {
		t.Fatalf("err = %v", err)
	}
}

func TestNonLoopbackListenWarns(t *testing.T) {
	for listen, warn := range map[string]bool{
		"inet:127.0.0.1:10030":  false,
		"inet:[::1]:10030":      false,
		"inet:localhost:10030":  false,
		"unix:/run/b.sock":      false,
		"inet:0.0.0.0:10030":    true,
		"inet:192.0.2.10:10030": true,
	} {
		t.Setenv("BCCGUARD_LISTEN", listen)
		c, err := Load("testdata/city.yaml")
		if err != nil {
			t.Fatal(err)
		}
		got := len(c.Warnings) == 1 && strings.Contains(c.Warnings[0], "no authentication")
		if got != warn {
			t.Errorf("%s: warnings %q", listen, c.Warnings)
		}
	}
}

// TestCountDomains: count: domains is accepted in policy and per domain,
// and a wrong value names all three choices.
func TestCountDomains(t *testing.T) {
	f := filepath.Join(t.TempDir(), "c.yaml")
	body := "internal_domains: [city.example.jp]\npolicy:\n  count: Domains\ndomains:\n  - domain: city.example.jp\n  - domain: board.city.example.jp\n    count: all\n"
	if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Policy.Domains[0].Settings.Count; got != policy.CountDomains {
		t.Errorf("domains[0] count %q", got)
	}
	if got := c.Policy.Domains[1].Settings.Count; got != policy.CountAll {
		t.Errorf("domains[1] count %q", got)
	}
	if err := os.WriteFile(f, []byte("policy:\n  count: companies\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(f); err == nil || !strings.Contains(err.Error(), "policy.count") || !strings.Contains(err.Error(), "all, external, domains") {
		t.Errorf("err = %v", err)
	}
}

func TestReinjectSection(t *testing.T) {
	f := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(f, []byte("reinject:\n  address: inet:127.0.0.1:10026\n  timeout: 1m\n"), 0o600)
	c, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	if c.Reinject != (Reinject{Address: "inet:127.0.0.1:10026", Timeout: time.Minute}) {
		t.Errorf("reinject = %+v", c.Reinject)
	}
	if d, err := Load(""); err != nil || d.Reinject != (Reinject{Timeout: 30 * time.Second}) {
		t.Errorf("default reinject = %+v (%v)", d.Reinject, err)
	}

	os.WriteFile(f, []byte("reinject:\n  address: 127.0.0.1:10026\n  timeout: 30\n  adress: x\n"), 0o600)
	_, err = Load(f)
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v", err)
	}
	got := map[string]string{}
	for _, p := range ce.Problems {
		got[p.Key] = p.Msg
	}
	for _, k := range []string{"reinject.address", "reinject.timeout", "reinject.adress"} {
		if got[k] == "" {
			t.Errorf("no problem for %s in\n%v", k, err)
		}
	}

	// Over a minute: a split's budget and a last slow reply would not fit
	// in milter_content_timeout.
	os.WriteFile(f, []byte("reinject:\n  timeout: 61s\n"), 0o600)
	if _, err := Load(f); err == nil || !strings.Contains(err.Error(), "reinject.timeout") {
		t.Errorf("a 61s reinject.timeout: %v", err)
	}

	t.Setenv("BCCGUARD_REINJECT_ADDRESS", "unix:/run/reinject.sock")
	if c, err := Load(""); err != nil || c.Reinject.Address != "unix:/run/reinject.sock" {
		t.Errorf("from the environment: %+v (%v)", c, err)
	}
}

func TestSplitRefusals(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "c.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(f, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got := problems(t, "domains:\n  - domain: city.example.jp\n  - domain: kikaku.city.example.jp\n    delivery: split\n"+
		"split:\n  state_dir: "+filepath.Join(dir, "missing")+"\n")
	if !strings.Contains(got["reinject.address"], "domains[1]") || !strings.Contains(got["split.state_dir"], "writable") {
		t.Errorf("problems %q", got)
	}

	got = problems(t, "policy:\n  delivery: copy\nsplit:\n  max_recipients: 0\n  max_message_bytes: 10\n  retention: 10m\n  state_dir: relative\ndomains:\n  - domain: a.example\n    delivery: splitt\n")
	for _, k := range []string{"policy.delivery", "domains[0].delivery", "split.max_recipients", "split.max_message_bytes", "split.retention", "split.state_dir"} {
		if got[k] == "" {
			t.Errorf("no problem for %s in %q", k, got)
		}
	}

	// A disabled entry does not need the service.
	write("domains:\n  - domain: a.example\n    delivery: split\n    enabled: false\nsplit:\n  state_dir: /nonexistent\n")
	if _, err := Load(f); err != nil {
		t.Errorf("disabled split entry: %v", err)
	}

	write("reinject:\n  address: inet:127.0.0.1:10026\npolicy:\n  delivery: split\nsplit:\n  state_dir: " + dir + "\n  max_recipients: 7\n")
	c, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	if c.Split.MaxRecipients != 7 || c.Split.StateDir != dir || c.Split.Retention != 120*time.Hour || c.Split.MaxMessageBytes != 10<<20 ||
		c.Policy.Default.Delivery != policy.DeliverySplit || !c.Policy.UsesSplit() {
		t.Errorf("split config %+v, policy %+v", c.Split, c.Policy.Default)
	}
	if !strings.Contains(c.YAML(), "delivery: split") || !strings.Contains(c.YAML(), "max_recipients: 7") {
		t.Errorf("effective config:\n%s", c.YAML())
	}
}

// TestSplitStateDirCheckedForTheServiceUser: run as root, config check
// warns when the service user could not write the state directory or
// split.db (root passes every permission check itself).
func TestSplitStateDirCheckedForTheServiceUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("checks what root cannot see; needs root")
	}
	old := ServiceUser
	ServiceUser = "nobody"
	defer func() { ServiceUser = old }()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "c.yaml")
	body := "reinject:\n  address: inet:127.0.0.1:10026\npolicy:\n  delivery: split\nsplit:\n  state_dir: " + dir + "\n"
	if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	warned := func() bool {
		c, err := Load(f)
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(c.Warnings, func(w string) bool { return strings.Contains(w, "not writable by the service user nobody") })
	}
	if !warned() {
		t.Error("no warning for a root-owned 0755 state_dir")
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if warned() {
		t.Error("a warning for a world-writable state_dir")
	}
	if err := os.WriteFile(filepath.Join(dir, "split.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if !warned() {
		t.Error("no warning for a root-owned 0600 split.db")
	}
}
