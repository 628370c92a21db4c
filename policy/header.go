package policy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
)

// Field is one header field as a milter receives it: the name without the
// colon, the value without the space after the colon and without the final
// line break, folded lines kept.
type Field struct {
	// Name is the field name as written, in any case.
	Name string
	// Value is the raw value, folded lines kept.
	Value string
}

// EditOp is the kind of a header edit.
type EditOp int

const (
	// EditChange replaces the Index-th field named Name; an empty Value
	// deletes it, and an Index past the last such field adds one.
	EditChange EditOp = iota
	// EditAdd appends a field at the end of the header.
	EditAdd
)

// Edit is one header change, in the terms of the milter protocol's
// SMFIR_CHGHEADER and SMFIR_ADDHEADER, so the adapter can pass it on as is.
type Edit struct {
	// Op says whether the field is changed or added.
	Op EditOp
	// Name is the field name.
	Name string
	// Index is one-based and counts only fields whose name equals Name
	// case-insensitively.
	Index int
	// Value is the new value; "" deletes the field.
	Value string
}

// Apply returns the header after edits, applied in order the way Postfix
// applies milter replies. It is what `bccguard check` prints, and what the
// tests compare with the header Postfix really delivers.
func Apply(h []Field, edits []Edit) []Field {
	out := append([]Field(nil), h...)
	for _, e := range edits {
		switch e.Op {
		case EditAdd:
			out = append(out, Field{Name: e.Name, Value: e.Value})
		case EditChange:
			n := 0
			pos := -1
			for i, f := range out {
				if strings.EqualFold(f.Name, e.Name) {
					n++
					if n == e.Index {
						pos = i
						break
					}
				}
			}
			switch {
			case pos < 0 && e.Value != "":
				out = append(out, Field{Name: e.Name, Value: e.Value})
			case pos >= 0 && e.Value == "":
				out = append(out[:pos], out[pos+1:]...)
			case pos >= 0:
				out[pos].Value = e.Value
			}
		}
	}
	return out
}

// ReadHeader reads the header block of a message (up to the first empty
// line, or the end of input) into fields, keeping folded lines. It accepts
// CRLF and LF line ends. A line that is neither a field nor a continuation
// is an error naming its line number.
func ReadHeader(r io.Reader) ([]Field, error) {
	br := bufio.NewReader(r)
	var fields []Field
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadString('\n')
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("read header: %w", err)
		}
		trimmed := strings.TrimRight(line, "\r\n")
		if trimmed == "" {
			return fields, nil
		}
		if lineNo == 1 && strings.HasPrefix(trimmed, "From ") && !isFromField(trimmed) {
			// The envelope line of an mbox file, not a field.
			continue
		}
		if trimmed[0] == ' ' || trimmed[0] == '\t' {
			if len(fields) == 0 {
				return nil, fmt.Errorf("read header: line %d: continuation line before the first field", lineNo)
			}
			fields[len(fields)-1].Value += "\r\n" + trimmed
		} else {
			name, value, ok := strings.Cut(trimmed, ":")
			// "To : x" is obsolete syntax that Postfix accepts, trimming
			// the blanks; the milter sees "To".
			name = strings.TrimRight(name, " \t")
			if !ok || name == "" || strings.ContainsAny(name, " \t") {
				return nil, fmt.Errorf("read header: line %d: not a header field: %q", lineNo, truncate(trimmed, 60))
			}
			// Postfix strips one leading space from the value before it
			// passes a header to a milter (unless SMFIP_HDR_LEADSPC).
			fields = append(fields, Field{Name: name, Value: strings.TrimPrefix(value, " ")})
		}
		if err == io.EOF {
			return fields, nil
		}
	}
}

// isFromField tells "From : a@b" (a field in obsolete syntax) from the
// envelope line "From a@b Thu Nov 26 ..." that starts an mbox file.
func isFromField(line string) bool {
	name, _, ok := strings.Cut(line, ":")
	return ok && strings.TrimRight(name, " \t") == "From"
}

// FormatHeader writes fields as a header block with CRLF line ends and the
// empty line that ends it.
func FormatHeader(h []Field) string {
	var b bytes.Buffer
	for _, f := range h {
		b.WriteString(f.Name)
		b.WriteString(": ")
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(f.Value, "\r\n", "\n"), "\n", "\r\n"))
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
