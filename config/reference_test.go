package config

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// codeKeys lists every key the loader knows, in the reference's spelling.
func codeKeys() []string {
	var keys []string
	for k := range defaults() {
		keys = append(keys, k)
	}
	keys = append(keys, "domains", "domains[].domain", "domains[].enabled")
	for k := range defaults() {
		if p, ok := strings.CutPrefix(k, "policy."); ok {
			keys = append(keys, "domains[]."+p)
		}
	}
	sort.Strings(keys)
	return keys
}

var headingKeys = regexp.MustCompile(`(?m)^###\s+(.+)$`)

// docKeys returns the keys documented as "### key" headings (several keys
// may share one heading, separated by commas).
func docKeys(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, m := range headingKeys.FindAllStringSubmatch(string(b), -1) {
		for _, k := range strings.Split(m[1], ",") {
			keys = append(keys, strings.Trim(strings.TrimSpace(k), "`"))
		}
	}
	sort.Strings(keys)
	return keys
}

// TestReferenceMatchesCode fails when a config key exists in the code but
// not in the admin reference, or the other way round, in every language.
func TestReferenceMatchesCode(t *testing.T) {
	code := codeKeys()
	for _, doc := range []string{"../docs/configuration.md", "../docs/ja/configuration.md"} {
		docs := docKeys(t, doc)
		inCode := map[string]bool{}
		for _, k := range code {
			inCode[k] = true
		}
		inDoc := map[string]bool{}
		for _, k := range docs {
			inDoc[k] = true
			if !inCode[k] {
				t.Errorf("%s documents %q, which the code does not know", doc, k)
			}
		}
		for _, k := range code {
			if !inDoc[k] {
				t.Errorf("%s does not document %q", doc, k)
			}
		}
	}
}

// TestShippedConfigLoads: the example the package installs is valid.
func TestShippedConfigLoads(t *testing.T) {
	c, err := Load("../deploy/bccguard.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 0 {
		t.Fatalf("warnings: %q", c.Warnings)
	}
}
