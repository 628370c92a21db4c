package notice

import (
	"os"
	"strings"
	"testing"
)

// TestDocsShowBuiltinText: the reference prints the built-in text in
// full, in both languages; it must be the text the daemon sends.
func TestDocsShowBuiltinText(t *testing.T) {
	for _, doc := range []string{"../docs/configuration.md", "../docs/ja/configuration.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "```text\n"+BuiltinText()+"```\n") {
			t.Errorf("%s does not show the built-in notice text as it is in notice/builtin.tmpl", doc)
		}
	}
}
