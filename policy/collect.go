package policy

import "strings"

// Limits that keep the time and memory of one decision bounded whatever a
// client sends. They apply to To and Cc separately; Resent-To counts with
// To and Resent-Cc with Cc. Postfix's default
// header_size_limit (100 KiB for one header field) keeps a single field
// below them, but a message can repeat a field many times.
const (
	// MaxAddressBytes is the most bytes of To fields (and of Cc fields)
	// read per message.
	MaxAddressBytes = 256 << 10
	// MaxAddressFields is the most To fields (and Cc fields) read per
	// message.
	MaxAddressFields = 1000
	// maxFromBytes bounds the From value kept for replacement: sender.
	maxFromBytes = 16 << 10
)

// Overflow tells which limits a message went over.
type Overflow struct {
	// ToValues means some To values were dropped (every To field is still
	// listed, with an empty value, so that all can be replaced).
	ToValues bool
	// ToFields means there were more than MaxAddressFields To fields and
	// the ones past the limit are not listed at all.
	ToFields bool
	// CcValues and CcFields are the same for Cc.
	CcValues, CcFields bool
}

func (o Overflow) merge(p Overflow) Overflow {
	return Overflow{o.ToValues || p.ToValues, o.ToFields || p.ToFields, o.CcValues || p.CcValues, o.CcFields || p.CcFields}
}

// any reports whether a field the rule reads went over a limit.
func (o Overflow) any(withCc bool) bool {
	return o.ToValues || o.ToFields || withCc && (o.CcValues || o.CcFields)
}

// measure checks a complete header against the limits, for callers that
// did not use a Collector.
func measure(h []Field) Overflow {
	var o Overflow
	var toN, ccN, toBytes, ccBytes int
	for _, f := range h {
		switch {
		case isToName(f.Name):
			toN++
			toBytes += len(f.Value)
		case isCcName(f.Name):
			ccN++
			ccBytes += len(f.Value)
		}
	}
	o.ToFields, o.ToValues = toN > MaxAddressFields, toBytes > MaxAddressBytes
	o.CcFields, o.CcValues = ccN > MaxAddressFields, ccBytes > MaxAddressBytes
	return o
}

// Collector gathers the header fields the policy reads as they arrive one
// by one (from the milter, or from a file in `bccguard check`), within the
// limits, so that no message can make it grow without bound. The daemon and
// `check` both use it, so that both see the same Message.
type Collector struct {
	header           []Field
	toN, ccN         int
	toBytes, ccBytes int
	haveFrom         bool
	over             Overflow
}

// Reset forgets everything, for the next message; it keeps the memory.
func (c *Collector) Reset() {
	clear(c.header)
	*c = Collector{header: c.header[:0]}
}

// Add offers one header field; fields the policy does not read are ignored.
func (c *Collector) Add(name, value string) {
	switch {
	case isToName(name):
		c.addAddress(name, value, &c.toN, &c.toBytes, &c.over.ToFields, &c.over.ToValues)
	case isCcName(name):
		c.addAddress(name, value, &c.ccN, &c.ccBytes, &c.over.CcFields, &c.over.CcValues)
	case strings.EqualFold(name, "From") && !c.haveFrom:
		// Only the first From is ever used (replacement: sender).
		c.haveFrom = true
		if len(value) > maxFromBytes {
			value = ""
		}
		c.header = append(c.header, Field{Name: name, Value: value})
	}
}

func (c *Collector) addAddress(name, value string, n, size *int, tooMany, tooBig *bool) {
	*n++
	if *n > MaxAddressFields {
		*tooMany = true
		return
	}
	if *size+len(value) > MaxAddressBytes {
		value, *tooBig = "", true
	}
	*size += len(value)
	c.header = append(c.header, Field{Name: name, Value: value})
}

// Message returns what was collected, for sender.
func (c *Collector) Message(sender string) Message {
	return Message{Sender: sender, Header: c.header, Overflow: c.over}
}

// isToName reports whether a field is read like To: To itself, and
// Resent-To, which redirecting clients fill with the new recipients.
func isToName(name string) bool {
	return strings.EqualFold(name, "To") || strings.EqualFold(name, "Resent-To")
}

// isCcName reports whether a field is read like Cc: Cc and Resent-Cc.
func isCcName(name string) bool {
	return strings.EqualFold(name, "Cc") || strings.EqualFold(name, "Resent-Cc")
}
