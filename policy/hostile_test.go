package policy

import (
	"fmt"
	"strings"
	"testing"
)

func manyAddresses(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(",\r\n ")
		}
		fmt.Fprintf(&b, "user%d@ext%d.example", i, i)
	}
	return b.String()
}

// TestHostileHeaders: each broken or hostile shape is decided without a
// panic, in bounded time (the size limits), and never leaves an address of
// a converted To visible.
func TestHostileHeaders(t *testing.T) {
	manyFields := []Field{{"From", "staff@city.example.jp"}}
	for i := 0; i < 1000; i++ {
		manyFields = append(manyFields, Field{"To", fmt.Sprintf("u%d@ext.example", i)})
	}
	tooManyFields := append(append([]Field(nil), manyFields...), Field{"To", "last@ext.example"})
	tests := []struct {
		name   string
		header []Field
		action Action
		parse  ParseProblem
	}{
		{"2,000 addresses in one To", hdr("To", manyAddresses(2000)), Convert, ParseOK},
		{"10,000 addresses in one To", hdr("To", manyAddresses(10000)), Convert, ParseTooLarge},
		{"1 MiB To", hdr("To", "a@ext.example, "+strings.Repeat("x", 1<<20)), Convert, ParseTooLarge},
		{"1,000 To fields", manyFields, Convert, ParseOK},
		{"1,001 To fields", tooManyFields, Tempfail, ParseTooLarge},
		{"NUL bytes", hdr("To", "a@ext.example,\x00 b@other.example"), Convert, ParseLenient},
		{"NUL inside an address", hdr("To", "a\x00b@ext.example, c@other.example"), Convert, ParseLenient},
		{"bare CR and LF", hdr("To", "a@ext.example\rb@other.example\nc@third.example"), Convert, ParseLenient},
		{"invalid UTF-8", hdr("To", "\xff\xfe <a@ext.example>, b@other.example"), Convert, ParseLenient},
		{"invalid UTF-8 in a domain", hdr("To", "a@ext\xff.example, b@other.example"), Convert, ParseLenient},
		{"Postfix-rewritten unterminated quote", hdr("To", "\"Suzuki <a@ext.example>, b@other.example\"@mx.test.invalid"), Convert, ParseLenient},
		{"address in a display name", hdr("To", "\"Bob (b@other.example)\" <a@ext.example>"), Convert, ParseLenient},
		{"same address as display name", hdr("To", "\"a@ext.example\" <a@ext.example>"), Pass, ParseOK},
		{"unterminated quote", hdr("To", "\"Suzuki <a@ext.example>, b@other.example"), Convert, ParseLenient},
		{"unterminated comment", hdr("To", "a@ext.example (note, b@other.example"), Convert, ParseLenient},
		{"unterminated angle bracket", hdr("To", "Suzuki <a@ext.example, b@other.example"), Convert, ParseLenient},
		{"nested groups", hdr("To", "Outer: Inner: a@ext.example;, b@other.example;"), Convert, ParseLenient},
		{"unknown charset", hdr("To", "=?x-unknown?B?abc?= <a@ext.example>, b@other.example"), Convert, ParseOK},
		{"broken base64", hdr("To", "=?utf-8?B?!!!?= <a@ext.example>, b@other.example"), Convert, ParseOK},
		// Bare names are addresses of the organization's own domain.
		{"no domain", hdr("To", "alice, bob"), Pass, ParseLenient},
		{"no domain mixed", hdr("To", "alice, b@other.example"), Convert, ParseLenient},
		{"nothing readable", hdr("To", "<@>, <>"), Convert, ParseUnreadable},
		{"IP literals", hdr("To", "a@[192.0.2.1], b@[IPv6:2001:db8::1]"), Convert, ParseLenient},
		{"odd case name", hdr("tO", "a@ext.example, b@other.example"), Convert, ParseOK},
		{"empty To", hdr("To", ""), Pass, ParseOK},
		{"only whitespace", hdr("To", " \r\n\t "), Pass, ParseOK},
		{"only commas", hdr("To", ",,,"), Pass, ParseOK},
	}
	cfg := cityConfig(t, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(cfg, Message{Sender: "staff@city.example.jp", Header: tc.header})
			if d.Action != tc.action || d.Parse != tc.parse {
				t.Fatalf("action %v parse %q (%s); want %v %q", d.Action, d.Parse, d.Reason, tc.action, tc.parse)
			}
			if d.Action != Convert {
				return
			}
			var tos []string
			for _, f := range Apply(tc.header, d.Edits) {
				if strings.EqualFold(f.Name, "To") {
					tos = append(tos, f.Value)
				}
			}
			if len(tos) != 1 || tos[0] != "undisclosed-recipients:;" {
				t.Fatalf("To after conversion: %d fields, first %.80q", len(tos), tos)
			}
		})
	}
}

func TestQuotedPairsKeepAddressesApart(t *testing.T) {
	a := Address{Addr: `"a\\b"@ext.example`, Domain: "ext.example"}
	b := Address{Addr: `"ab"@ext.example`, Domain: "ext.example"}
	if a.key() == b.key() {
		t.Fatalf("%s and %s counted as one", a.Addr, b.Addr)
	}
	c := Address{Addr: `"a\"b"@x.example`, Domain: "x.example"}
	if got := c.key(); got != `a"b@x.example` {
		t.Fatalf("key %q", got)
	}
}

// TestEmbeddedAddressesManyAddresses: a quoted display name makes the field
// go through the embedded-address check, which must count each of 9,000
// upper-case addresses once. (It was quadratic once; that shows as this
// test's run time, not as a failure.)
func TestEmbeddedAddressesManyAddresses(t *testing.T) {
	v := `"Z@Q.CC" <Z@Q.CC>, ` + strings.ToUpper(manyAddresses(9000))
	pa := ParseAddressField(v)
	if len(pa.Addrs) != 9001 {
		t.Fatalf("%d addresses", len(pa.Addrs))
	}
}
