package notice

import (
	"bytes"
	"io"
	"mime"
	netmail "net/mail"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message/mail"

	"github.com/bccguard/bccguard/policy"
)

func settings() *Settings {
	return &Settings{From: netmail.Address{Name: "情報政策課", Address: "postmaster@city.example.jp"}, MinInterval: 10 * time.Minute}
}

func event(dryRun bool) Event {
	return Event{
		QueueID: "4XyZ1abc",
		Sender:  "suzuki@city.example.jp",
		Original: Original{
			// ISO-2022-JP, as Japanese mail clients still write it: 会議のご案内
			Subject:   "=?ISO-2022-JP?B?GyRCMnE1RCROJDQwRkZiGyhC?=",
			Date:      "Wed, 2 Dec 2026 10:00:00 +0900",
			MessageID: " <orig.123@mua.city.example.jp>",
		},
		Decision: policy.Decision{
			Action: policy.Convert, DryRun: dryRun, Moved: 3, Rule: "domains[0] city.example.jp",
			Settings: policy.Settings{NotifySender: true, NotifyCopyTo: []string{"chief@city.example.jp", "SUZUKI@city.example.jp"}},
			To: []policy.Address{
				{Addr: "a@ext.example", Domain: "ext.example"},
				{Addr: "b@other.example", Domain: "other.example"},
				{Addr: "c@city.example.jp", Domain: "city.example.jp", Internal: true},
			},
		},
	}
}

// parse reads a notice with net/mail and with go-message, as a mail client
// would, and returns the decoded subject and body.
func readNotice(t *testing.T, data []byte) (h netmail.Header, subject, body string) {
	t.Helper()
	m, err := netmail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("net/mail: %v\n%s", err, data)
	}
	subject, err = new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if err != nil {
		t.Fatalf("net/mail subject: %v", err)
	}
	mr, err := mail.CreateReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("go-message: %v", err)
	}
	s2, err := mr.Header.Subject()
	if err != nil || s2 != subject {
		t.Fatalf("go-message subject %q (%v), net/mail %q", s2, err, subject)
	}
	p, err := mr.NextPart()
	if err != nil {
		t.Fatalf("go-message part: %v", err)
	}
	if ct, params, _ := p.Header.(*mail.InlineHeader).ContentType(); ct != "text/plain" || !strings.EqualFold(params["charset"], "utf-8") {
		t.Fatalf("content type %s %v", ct, params)
	}
	b, err := io.ReadAll(p.Body)
	if err != nil || !utf8.Valid(b) {
		t.Fatalf("body: %v, valid UTF-8: %v", err, utf8.Valid(b))
	}
	return m.Header, subject, string(b)
}

func TestComposeHeaders(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 1, 0, 0, time.FixedZone("JST", 9*3600))
	for _, dry := range []bool{false, true} {
		m, err := Compose(settings(), event(dry), now)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(m.Rcpts, " ") != "suzuki@city.example.jp chief@city.example.jp" {
			t.Errorf("rcpts = %v (the sender once, then each copy once)", m.Rcpts)
		}
		h, subject, body := readNotice(t, m.Data)
		from, err := h.AddressList("From")
		if err != nil || len(from) != 1 || from[0].Address != "postmaster@city.example.jp" || from[0].Name != "情報政策課" {
			t.Errorf("From = %v (%v)", from, err)
		}
		to, err := h.AddressList("To")
		if err != nil || len(to) != 1 || to[0].Address != "suzuki@city.example.jp" {
			t.Errorf("To = %v (%v)", to, err)
		}
		if d, err := h.Date(); err != nil || !d.Equal(now) {
			t.Errorf("Date = %v (%v)", d, err)
		}
		kind := "converted"
		wantSubject := "【bccguard】宛先を非表示にして送信しました: 会議のご案内"
		if dry {
			kind = "dry-run"
			wantSubject = "【bccguard 試行】宛先を非表示にする対象のメールでした: 会議のご案内"
		}
		for name, want := range map[string]string{
			"In-Reply-To":       "<orig.123@mua.city.example.jp>",
			"References":        "<orig.123@mua.city.example.jp>",
			"Auto-Submitted":    "auto-generated",
			"X-BCCGuard-Notice": kind,
			"Content-Type":      "text/plain; charset=UTF-8",
			"MIME-Version":      "1.0",
		} {
			if got := h.Get(name); got != want {
				t.Errorf("%s = %q, want %q", name, got, want)
			}
		}
		if id := h.Get("Message-ID"); !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@city.example.jp>") {
			t.Errorf("Message-ID = %q", id)
		}
		if subject != wantSubject {
			t.Errorf("subject = %q, want %q", subject, wantSubject)
		}
		raw := string(m.Data[:bytes.Index(m.Data, []byte("\r\n\r\n"))])
		if !strings.Contains(raw, "Subject: =?UTF-8?b?") {
			t.Errorf("subject not RFC 2047 encoded:\n%s", raw)
		}
		for _, line := range strings.Split(raw, "\r\n") {
			if len(line) > 998 || strings.ContainsAny(line, "\r\n") {
				t.Errorf("bad header line %q", line)
			}
		}
		for _, want := range []string{"会議のご案内", "Wed, 2 Dec 2026 10:00:00 +0900", "4XyZ1abc", "Bcc", "Cc", "postmaster@city.example.jp", "chief@city.example.jp", "3"} {
			if !strings.Contains(body, want) {
				t.Errorf("body does not name %q:\n%s", want, body)
			}
		}
		if strings.Contains(body, "ext.example") {
			t.Errorf("body names a recipient without list_recipients:\n%s", body)
		}
		if dry != strings.Contains(body, "試行期間中") || dry != strings.Contains(body, "trial period") {
			t.Errorf("dry-run wording wrong (dry=%v):\n%s", dry, body)
		}
	}
}

func TestComposeListRecipients(t *testing.T) {
	s := settings()
	s.ListRecipients = true
	e := event(false)
	e.Decision.Settings.Move = policy.MoveExternal
	m, err := Compose(s, e, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, _, body := readNotice(t, m.Data)
	if !strings.Contains(body, "a@ext.example") || !strings.Contains(body, "b@other.example") || strings.Contains(body, "c@city.example.jp") {
		t.Errorf("with move: external the hidden addresses are the external ones:\n%s", body)
	}
}

func TestComposeHostileOriginal(t *testing.T) {
	e := event(false)
	e.Original = Original{
		Subject:   "line one\r\n\tline two \x00\x1b[31m" + strings.Repeat("長い件名", 200),
		Date:      "",
		MessageID: "<a b@c>\r\nBcc: everyone@ext.example",
	}
	e.Sender = "suzuki@city.example.jp"
	m, err := Compose(settings(), e, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	h, subject, body := readNotice(t, m.Data)
	if h.Get("In-Reply-To") != "" || h.Get("References") != "" || h.Get("Bcc") != "" {
		t.Errorf("a broken Message-ID must be left out: %q %q", h.Get("In-Reply-To"), h.Get("Bcc"))
	}
	if strings.ContainsAny(subject, "\x00\x1b\r\n") || utf8.RuneCountInString(subject) > maxSubjectRunes+40 {
		t.Errorf("subject not cleaned or not cut: %q", subject)
	}
	if !strings.Contains(body, "（不明）") {
		t.Errorf("missing Date not shown as unknown:\n%s", body)
	}
	// An unreadable subject in raw Shift_JIS bytes is shown, not refused.
	e.Original.Subject = "\x89\xef\x8b\x63"
	if _, err := Compose(settings(), e, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func TestCustomTemplate(t *testing.T) {
	tmpl, err := ParseTemplate(`{{define "subject"}}Notice for {{.QueueID}}{{end}}Hidden {{.Hidden}}, {{.Delivery}}, rule {{.Rule}}, copies {{join .CopyTo ";"}}
` + strings.Repeat("x", 1200))
	if err != nil {
		t.Fatal(err)
	}
	s := settings()
	s.Template = tmpl
	m, err := Compose(s, event(false), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	h, subject, body := readNotice(t, m.Data)
	if subject != "Notice for 4XyZ1abc" {
		t.Errorf("subject = %q", subject)
	}
	if !strings.HasPrefix(body, "Hidden 3, hide, rule domains[0] city.example.jp, copies chief@city.example.jp\r\n") {
		t.Errorf("body = %q", body)
	}
	if h.Get("Content-Transfer-Encoding") != "quoted-printable" {
		t.Errorf("a line over 998 bytes needs quoted-printable, got %q", h.Get("Content-Transfer-Encoding"))
	}
	// Without a subject of its own, a template gets the built-in one.
	tmpl, err = ParseTemplate("{{.Sender}}")
	if err != nil {
		t.Fatal(err)
	}
	s.Template = tmpl
	m, _ = Compose(s, event(true), time.Now())
	if _, subject, _ := readNotice(t, m.Data); !strings.HasPrefix(subject, "【bccguard 試行】") {
		t.Errorf("subject = %q", subject)
	}
	for _, bad := range []string{"{{.Nope}}", "{{if}}", "{{index .Recipients 5}}", "{{template \"x\"}}"} {
		if _, err := ParseTemplate(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestWanted(t *testing.T) {
	d := event(false).Decision
	for _, c := range []struct {
		d      policy.Decision
		sender string
		want   bool
	}{
		{d, "a@city.example.jp", true},
		{d, "<>", false},
		{d, "", false},
		{policy.Decision{Action: policy.Pass, Settings: d.Settings}, "a@city.example.jp", false},
		{policy.Decision{Action: policy.Tempfail, Settings: d.Settings}, "a@city.example.jp", false},
		{policy.Decision{Action: policy.Convert}, "a@city.example.jp", false},
		// The catch-all rule of a config without domains: a forged
		// outside sender must not get a notice (backscatter).
		{policy.Decision{Action: policy.Convert, Settings: d.Settings, Rule: "default"}, "a@city.example.jp", false},
	} {
		if got := Wanted(c.d, c.sender); got != c.want {
			t.Errorf("Wanted(%v, %q) = %v", c.d.Action, c.sender, got)
		}
	}
}

func TestComposeNoCount(t *testing.T) {
	e := event(false)
	e.Decision.Moved = 0 // an unreadable To hidden under on_parse_error: hide
	m, err := Compose(settings(), e, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, _, body := readNotice(t, m.Data)
	if strings.Contains(body, " 0 ") || !strings.Contains(body, "宛先を非表示にして送信しました") || !strings.Contains(body, "bccguard hid\r\nthem.") {
		t.Errorf("zero count shown:\n%s", body)
	}
}

// A queued notice keeps no split copies (their recipients and header
// edits) alive.
func TestDetachedDropsCopies(t *testing.T) {
	e := event(false)
	e.Decision.Copies = []policy.Copy{{Rcpts: []string{"a@ext.example"}}}
	e.Decision.SplitEdits = []policy.Edit{{Name: "To"}}
	d := e.detached(false).Decision
	if d.Copies != nil || d.SplitEdits != nil || d.Edits != nil || d.To != nil {
		t.Fatalf("detached event keeps %d copies, %d split edits", len(d.Copies), len(d.SplitEdits))
	}
}
