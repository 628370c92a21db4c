package notice

import (
	_ "embed"
	"fmt"
	"os"
	"strings"
	"sync"
	"text/template"
)

// Data are the fields a notice template gets. They are documented for
// admins in docs/configuration.md ("notice.template"): keep both in step.
type Data struct {
	// DryRun is true when the rule is in dry-run: the message was sent
	// unchanged and would have been converted.
	DryRun bool
	// Subject is the original's Subject, decoded (RFC 2047, Japanese
	// charsets included), on one line; "" when it had none.
	Subject string
	// Date is the original's Date field as written, on one line.
	Date string
	// MessageID is the original's Message-ID without angle brackets.
	MessageID string
	// QueueID is Postfix's queue id of the original, as in its mail log.
	QueueID string
	// Sender is the envelope sender the notice goes to.
	Sender string
	// Hidden is how many addresses were (or would be) moved out of sight.
	Hidden int
	// Delivery is how they were hidden: "hide" (To replaced, one message
	// for all) or "split" (one copy per recipient showing only them).
	Delivery string
	// Recipients lists the hidden To addresses, only when
	// notice.list_recipients is true; empty otherwise.
	Recipients []string
	// ConvertCc is true when the rule hides Cc as well.
	ConvertCc bool
	// Rule names the config entry that applied, e.g. "domains[0] city.example.jp".
	Rule string
	// Contact is the address of notice.from: whom staff can ask.
	Contact string
	// CopyTo lists the notify_copy_to addresses that receive a copy.
	CopyTo []string
}

// Template is a parsed notice text: the body, and the subject when the
// file defines one ({{define "subject"}}...{{end}}).
type Template struct {
	body    *template.Template
	subject *template.Template
	// File is where it was read from; "" for the built-in text.
	File string
}

//go:embed builtin.tmpl
var builtinText string

// BuiltinText is the built-in Japanese and English template, as printed in
// the documentation.
func BuiltinText() string { return builtinText }

var builtin = sync.OnceValue(func() *Template {
	t, err := parse(builtinText, nil)
	if err != nil {
		panic("notice: the built-in template does not parse: " + err.Error())
	}
	return t
})

// Builtin returns the built-in template.
func Builtin() *Template { return builtin() }

var funcs = template.FuncMap{"join": strings.Join}

// ParseTemplate parses a notice template and runs it once on sample data,
// so that a misspelt field is found when the config is loaded, not when
// the first notice should go out. A template without a "subject"
// definition gets the built-in subject.
func ParseTemplate(text string) (*Template, error) {
	return parse(text, Builtin().subject)
}

// parse parses text; a text without a subject gets defaultSubject.
func parse(text string, defaultSubject *template.Template) (*Template, error) {
	body, err := template.New("notice").Funcs(funcs).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, err
	}
	t := &Template{body: body, subject: body.Lookup("subject")}
	if t.subject == nil {
		if defaultSubject == nil {
			return nil, fmt.Errorf("no subject defined")
		}
		t.subject = defaultSubject
	}
	for _, d := range sampleData() {
		if _, _, err := t.Execute(d); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// LoadTemplate reads and parses a template file.
func LoadTemplate(file string) (*Template, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	t, err := ParseTemplate(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	t.File = file
	return t, nil
}

// Execute renders the subject (on one line) and the body.
func (t *Template) Execute(d Data) (subject, body string, err error) {
	var b strings.Builder
	if err := t.subject.Execute(&b, d); err != nil {
		return "", "", fmt.Errorf("subject: %w", err)
	}
	subject = strings.Join(strings.Fields(b.String()), " ")
	b.Reset()
	if err := t.body.Execute(&b, d); err != nil {
		return "", "", fmt.Errorf("body: %w", err)
	}
	return subject, b.String(), nil
}

// sampleData covers the template's branches for the trial run.
func sampleData() []Data {
	d := Data{
		Subject: "会議の日程について", Date: "Wed, 2 Dec 2026 10:00:00 +0900",
		MessageID: "sample@city.example.jp", QueueID: "4ABCD1234", Sender: "staff@city.example.jp",
		Hidden: 3, Delivery: "hide", Rule: "domains[0] city.example.jp", Contact: "postmaster@city.example.jp",
	}
	dry, split, listed := d, d, d
	dry.DryRun = true
	split.Delivery = "split"
	split.ConvertCc = true
	listed.Recipients = []string{"a@ext.example", "b@other.example"}
	listed.CopyTo = []string{"chief@city.example.jp"}
	return []Data{d, dry, split, listed}
}
