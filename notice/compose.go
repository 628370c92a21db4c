package notice

import (
	"bytes"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"time"

	gomail "github.com/emersion/go-message/mail"
)

// Settings are the notice section of the config, shared by every rule.
type Settings struct {
	// From is the From of notices (notice.from); its address is also the
	// contact named in the text.
	From mail.Address
	// Template is the text; the built-in one when notice.template is "".
	Template *Template
	// ListRecipients names the hidden addresses in the notice; by default
	// it gives counts only.
	ListRecipients bool
	// MinInterval is the least time between two notices to one sender; 0
	// sends one every time.
	MinInterval time.Duration
	// Used is true when some rule in use has notify_sender: only then does
	// the milter keep the fields a notice names.
	Used bool
}

// Message is a composed notice and its envelope.
type Message struct {
	// Rcpts are the envelope recipients: the sender, then the
	// notify_copy_to addresses, each once. The envelope sender is always
	// null.
	Rcpts []string
	// Data is the message, CRLF line ends.
	Data []byte
}

// Kind is the value of X-BCCGuard-Notice: "converted" or "dry-run".
func Kind(dryRun bool) string {
	if dryRun {
		return "dry-run"
	}
	return "converted"
}

// Compose builds the notice for one event at time now.
func Compose(s *Settings, e Event, now time.Time) (Message, error) {
	t := s.Template
	if t == nil {
		t = Builtin()
	}
	d := e.data(s)
	subject, body, err := t.Execute(d)
	if err != nil {
		return Message{}, fmt.Errorf("notice: template %s: %w", t.name(), err)
	}
	msgID, err := newMessageID(s.From.Address)
	if err != nil {
		return Message{}, fmt.Errorf("notice: message id: %w", err)
	}
	var b bytes.Buffer
	field := func(name, value string) {
		b.WriteString(name + ": " + value + "\r\n")
	}
	field("From", s.From.String())
	field("To", (&mail.Address{Address: e.Sender}).String())
	field("Subject", fold(mime.BEncoding.Encode("UTF-8", subject), len("Subject: ")))
	field("Date", now.Format(time.RFC1123Z))
	field("Message-ID", "<"+msgID+">")
	if id := d.MessageID; id != "" {
		// So that mail clients thread the notice under the sent mail.
		field("In-Reply-To", "<"+id+">")
		field("References", "<"+id+">")
	}
	// RFC 3834: auto-responders must not answer it.
	field("Auto-Submitted", "auto-generated")
	field("X-BCCGuard-Notice", Kind(d.DryRun))
	field("MIME-Version", "1.0")
	field("Content-Type", "text/plain; charset=UTF-8")
	body = crlf(body)
	if longLines(body) {
		// 8bit allows lines of at most 998 bytes (RFC 5322); a custom
		// template may write longer ones.
		field("Content-Transfer-Encoding", "quoted-printable")
		b.WriteString("\r\n")
		w := quotedprintable.NewWriter(&b)
		w.Write([]byte(body))
		w.Close()
	} else {
		field("Content-Transfer-Encoding", "8bit")
		b.WriteString("\r\n")
		b.WriteString(body)
	}
	return Message{Rcpts: recipients(e.Sender, d.CopyTo), Data: b.Bytes()}, nil
}

func (t *Template) name() string {
	if t.File == "" {
		return "(built-in)"
	}
	return t.File
}

// newMessageID makes a unique id on the domain of the notice's From.
func newMessageID(from string) (string, error) {
	host := from[strings.LastIndexByte(from, '@')+1:]
	if host == "" {
		host = "bccguard.invalid"
	}
	var h gomail.Header
	if err := h.GenerateMessageIDWithHostname(host); err != nil {
		return "", err
	}
	return h.MessageID()
}

// fold breaks a header value at spaces so that lines stay within 78
// characters where it can; mime.BEncoding already splits a long subject
// into encoded words of at most 75 characters separated by spaces.
func fold(v string, first int) string {
	var b strings.Builder
	line := first
	for i, w := range strings.Split(v, " ") {
		if i > 0 {
			if line+1+len(w) > 78 {
				b.WriteString("\r\n")
				line = 0
			}
			b.WriteByte(' ')
			line++
		}
		b.WriteString(w)
		line += len(w)
	}
	return b.String()
}

// crlf gives the body CRLF line ends and a final line end.
func crlf(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return strings.ReplaceAll(s, "\n", "\r\n")
}

func longLines(body string) bool {
	for line := range strings.SplitSeq(body, "\r\n") {
		if len(line) > 998 {
			return true
		}
	}
	return false
}

// recipients is the sender and the copies, each address once.
func recipients(sender string, copyTo []string) []string {
	out := []string{sender}
	seen := map[string]bool{strings.ToLower(sender): true}
	for _, a := range copyTo {
		if k := strings.ToLower(a); !seen[k] {
			seen[k] = true
			out = append(out, a)
		}
	}
	return out
}
