package main

import (
	"fmt"
	"strings"
)

type field struct{ name, value string }

type rcpt struct{ addr, domain string }

// messageTemplate holds what stays the same from message to message of a
// session; header fills in what changes.
type messageTemplate struct {
	sender string
	rcpts  []rcpt
	fields []field
	body   []byte
	// Indexes into fields of the per-message fields.
	msgID, subject int
}

// maxLine is where the To field is folded, as mail clients do.
const maxLine = 78

func newMessageTemplate(cfg Config) *messageTemplate {
	t := &messageTemplate{sender: "staff@" + cfg.Internal}
	addrs := make([]string, cfg.To)
	for i := range addrs {
		domain := cfg.Internal
		if i > 0 {
			domain = fmt.Sprintf("ext%d.example", i)
		}
		addrs[i] = fmt.Sprintf("user%d@%s", i, domain)
		t.rcpts = append(t.rcpts, rcpt{addr: addrs[i], domain: domain})
	}
	t.fields = []field{
		{"Message-ID", ""},
		{"Date", "Tue, 04 Mar 2025 10:15:00 +0900"},
		{"MIME-Version", "1.0"},
		{"From", t.sender},
		{"To", foldAddressList(len("To: "), addrs)},
		{"Subject", ""},
		{"Content-Type", "text/plain; charset=UTF-8"},
		{"Content-Transfer-Encoding", "7bit"},
	}
	t.msgID, t.subject = 0, 5
	t.body = makeBody(cfg.Body)
	return t
}

// header returns the header fields of one message, values as Postfix
// passes them to a milter: without the space after the colon, folded
// lines separated by a bare newline. The slice is reused by the next call.
func (t *messageTemplate) header(qid string, seq int) []field {
	t.fields[t.msgID].value = fmt.Sprintf("<%d.%s@%s>", seq, qid, t.sender[strings.IndexByte(t.sender, '@')+1:])
	t.fields[t.subject].value = fmt.Sprintf("Meeting notes %d", seq)
	return t.fields
}

// foldAddressList joins addresses with ", " and folds before an address
// that would make the line longer than maxLine; prefix is the length of
// the field name and colon on the first line.
func foldAddressList(prefix int, addrs []string) string {
	var b strings.Builder
	n := prefix
	for i, a := range addrs {
		if i < len(addrs)-1 {
			a += ","
		}
		if i > 0 {
			if n+1+len(a) > maxLine {
				b.WriteString("\n ")
				n = 1
			} else {
				b.WriteByte(' ')
				n++
			}
		}
		b.WriteString(a)
		n += len(a)
	}
	return b.String()
}

// makeBody returns size bytes of CRLF-terminated text lines.
func makeBody(size int) []byte {
	const line = "The quick brown fox jumps over the lazy dog. 0123456789 ABCDEFGHIJKLMNOP\r\n"
	b := make([]byte, 0, size)
	for len(b) < size {
		b = append(b, line[:min(len(line), size-len(b))]...)
	}
	if size >= 2 {
		b[size-2], b[size-1] = '\r', '\n'
	}
	return b
}
