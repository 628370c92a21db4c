package reinject

import (
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-smtp"
)

// ParseMailArgs reads the ESMTP parameters of MAIL FROM as a milter sees
// them (["BODY=8BITMIME", "SMTPUTF8", "SIZE=1234"]) into a Mail for from.
// Parameters that do not concern a copy (SIZE, AUTH) and unknown ones are
// left out; values are kept as written, xtext decoded.
func ParseMailArgs(from string, args []string) Mail {
	m := Mail{From: from}
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		switch strings.ToUpper(k) {
		case "BODY":
			m.Body = smtp.BodyType(strings.ToUpper(v))
		case "SMTPUTF8":
			m.SMTPUTF8 = true
		case "RET":
			m.Ret = smtp.DSNReturn(strings.ToUpper(v))
		case "ENVID":
			m.EnvID = decodeXtext(v)
		}
	}
	return m
}

// ParseRcptArgs reads the ESMTP parameters of RCPT TO as a milter sees
// them (["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;bob+40example.com"]) into
// a Rcpt for addr.
func ParseRcptArgs(addr string, args []string) Rcpt {
	r := Rcpt{Addr: addr}
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		switch strings.ToUpper(k) {
		case "NOTIFY":
			for _, n := range strings.Split(v, ",") {
				r.Notify = append(r.Notify, smtp.DSNNotify(strings.ToUpper(n)))
			}
		case "ORCPT":
			typ, val, ok := strings.Cut(v, ";")
			if !ok {
				continue
			}
			// Postfix checks the type when it receives ORCPT; it is
			// "rfc822" (or "utf-8") in any case.
			if strings.EqualFold(typ, "utf-8") {
				// RFC 6533: utf-8-addr-xtext or -unitext, escapes
				// written \x{HEX}, not xtext's +HH.
				r.ORcptType = smtp.DSNAddressTypeUTF8
				r.ORcpt = decodeUTF8Addr(val)
			} else {
				r.ORcptType = smtp.DSNAddressTypeRFC822
				r.ORcpt = decodeXtext(val)
			}
		}
	}
	return r
}

// utf8Escape is RFC 6533's escape of one code point.
var utf8Escape = regexp.MustCompile(`\\x\{[0-9A-Fa-f]{1,6}\}`)

// decodeUTF8Addr undoes RFC 6533's \x{HEX} escapes (go-smtp encodes them
// again when it sends); a malformed escape is kept as written.
func decodeUTF8Addr(s string) string {
	if !strings.Contains(s, `\x{`) {
		return s
	}
	return utf8Escape.ReplaceAllStringFunc(s, func(m string) string {
		n, err := strconv.ParseUint(m[3:len(m)-1], 16, 32)
		if err != nil || !utf8.ValidRune(rune(n)) {
			return m
		}
		return string(rune(n))
	})
}

// decodeXtext undoes RFC 3461 xtext ("+2B" for "+"); a malformed escape is
// kept as written.
func decodeXtext(s string) string {
	if !strings.Contains(s, "+") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '+' && i+3 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(n))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
