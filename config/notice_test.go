package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bccguard/bccguard/notice"
)

func writeYAML(t *testing.T, dir, body string) string {
	t.Helper()
	f := filepath.Join(dir, "bccguard.yaml")
	if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// problems loads body (from a file of its own) and returns the problems
// by key; the load must fail.
func problems(t *testing.T, body string) map[string]string {
	t.Helper()
	_, err := Load(writeYAML(t, t.TempDir(), body))
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *Error", err)
	}
	got := map[string]string{}
	for _, p := range ce.Problems {
		got[p.Key] = p.Msg
	}
	return got
}

func TestNoticeSettingsMergePerEntry(t *testing.T) {
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "notice.tmpl")
	if err := os.WriteFile(tmpl, []byte(`{{define "subject"}}Sent: {{.Subject}}{{end}}{{.Hidden}} hidden; ask {{.Contact}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(writeYAML(t, dir, `
internal_domains: [city.example.jp, .city.example.jp]
reinject:
  address: inet:127.0.0.1:10026
policy:
  notify_sender: true
  notify_copy_to: [security@city.example.jp]
domains:
  - domain: city.example.jp
  - domain: kikaku.city.example.jp
    notify_copy_to: [chief@kikaku.city.example.jp, security@city.example.jp]
  - domain: board.city.example.jp
    notify_sender: false
    notify_copy_to: []
notice:
  from: 情報政策課 <postmaster@city.example.jp>
  template: notice.tmpl
  list_recipients: true
  min_interval: 1h
`))
	if err != nil {
		t.Fatal(err)
	}
	d := c.Policy.Domains
	if !d[0].Settings.NotifySender || !reflect.DeepEqual(d[0].Settings.NotifyCopyTo, []string{"security@city.example.jp"}) {
		t.Errorf("domains[0] inherits: %+v", d[0].Settings)
	}
	if !d[1].Settings.NotifySender || len(d[1].Settings.NotifyCopyTo) != 2 {
		t.Errorf("domains[1] overrides the copy list: %+v", d[1].Settings)
	}
	if d[2].Settings.NotifySender || len(d[2].Settings.NotifyCopyTo) != 0 {
		t.Errorf("domains[2] turns notices off: %+v", d[2].Settings)
	}
	n := c.Notice
	if n.From.Address != "postmaster@city.example.jp" || n.From.Name != "情報政策課" || !n.ListRecipients || n.MinInterval != time.Hour {
		t.Errorf("notice = %+v", n)
	}
	if n.Template.File != tmpl {
		t.Errorf("template read from %q, want %q (relative to the config file)", n.Template.File, tmpl)
	}
	checkEffectiveLoads(t, c)
}

func TestNoticeDefaults(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Notice.MinInterval != 10*time.Minute || c.Notice.ListRecipients || c.Notice.From.Address != "" || c.Notice.Template != notice.Builtin() {
		t.Fatalf("notice defaults = %+v", c.Notice)
	}
	if c.Policy.Default.NotifySender || c.Policy.Default.NotifyCopyTo != nil {
		t.Fatalf("notify defaults = %+v", c.Policy.Default)
	}
}

func TestNoticeProblems(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.tmpl")
	os.WriteFile(broken, []byte("{{if .DryRun}}unterminated"), 0o600)
	misspelt := filepath.Join(dir, "misspelt.tmpl")
	os.WriteFile(misspelt, []byte("{{.Hiden}} addresses"), 0o600)

	got := problems(t, `
domains:
  - domain: city.example.jp
    notify_sender: true
    notify_copy_to: ["Chief <chief@city.example.jp>", nobody, ok@city.example.jp]
notice:
  template: `+broken+`
  min_interval: 600
`)
	for key, want := range map[string]string{
		"notice.from":                  "domains[0].notify_sender is true",
		"domains[0].notify_copy_to[0]": "is not an address",
		"domains[0].notify_copy_to[1]": "is not an address",
		"notice.template":              "broken.tmpl: template: notice:1: unexpected EOF",
		"notice.min_interval":          "at least 1s",
	} {
		if !strings.Contains(got[key], want) {
			t.Errorf("%s: got %q, want it to say %q", key, got[key], want)
		}
	}
	if _, ok := got["domains[0].notify_copy_to[2]"]; ok {
		t.Errorf("a good address refused: %v", got)
	}

	got = problems(t, "notice:\n  from: postmaster@city.example.jp\n  template: "+misspelt+"\n")
	if !strings.Contains(got["notice.template"], "Hiden") {
		t.Errorf("a misspelt field must be found at load: %v", got)
	}
	got = problems(t, "notice:\n  from: \"not an address\"\n  template: "+filepath.Join(dir, "missing.tmpl")+"\n")
	if !strings.Contains(got["notice.from"], "not an address") || !strings.Contains(got["notice.template"], "no such file") {
		t.Errorf("got %v", got)
	}
	// A disabled entry that would notify needs no From.
	if _, err := Load(writeYAML(t, t.TempDir(), "domains:\n  - domain: x.example\n    enabled: false\n    notify_sender: true\n")); err != nil {
		t.Errorf("disabled entry: %v", err)
	}
}

func TestNoticeFromEnvironment(t *testing.T) {
	t.Setenv("BCCGUARD_POLICY_NOTIFY_SENDER", "true")
	t.Setenv("BCCGUARD_POLICY_NOTIFY_COPY_TO", "a@city.example.jp,b@city.example.jp")
	t.Setenv("BCCGUARD_NOTICE_FROM", "postmaster@city.example.jp")
	t.Setenv("BCCGUARD_NOTICE_MIN_INTERVAL", "0s")
	t.Setenv("BCCGUARD_REINJECT_ADDRESS", "inet:127.0.0.1:10026")
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Policy.Default.NotifySender || len(c.Policy.Default.NotifyCopyTo) != 2 || c.Notice.MinInterval != 0 {
		t.Fatalf("env not applied: %+v %+v", c.Policy.Default, c.Notice)
	}
}
