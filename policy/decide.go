package policy

import (
	"fmt"
	"strings"

	"github.com/emersion/go-message/mail"
)

// Action is what happens to a message.
type Action int

const (
	// Pass lets the message through unchanged.
	Pass Action = iota
	// Convert hides the visible recipients (unless DryRun).
	Convert
	// Tempfail refuses the message with a temporary failure, so that the
	// client tries again later and nothing leaks in the meantime.
	Tempfail
)

// String returns "pass", "convert" or "tempfail".
func (a Action) String() string {
	switch a {
	case Convert:
		return "convert"
	case Tempfail:
		return "tempfail"
	}
	return "pass"
}

// ParseProblem says how well the address fields could be read.
type ParseProblem string

const (
	// ParseOK means every field parsed strictly.
	ParseOK ParseProblem = ""
	// ParseLenient means at least one field failed the strict parser and
	// was counted by the lenient extractor.
	ParseLenient ParseProblem = "lenient"
	// ParseUnreadable means at least one field held no address that even
	// the lenient extractor could find; OnParseError applied.
	ParseUnreadable ParseProblem = "unreadable"
	// ParseTooLarge means the address fields were over MaxAddressBytes or
	// MaxAddressFields and were not read at all; OnParseError applied.
	ParseTooLarge ParseProblem = "too_large"
)

// Message is what the policy needs to know about one message.
type Message struct {
	// Sender is the envelope sender (MAIL FROM), with or without angle
	// brackets; empty for the null sender of bounces.
	Sender string
	// Header holds the header fields in message order. Fields other than
	// To, Cc and From may be left out.
	Header []Field
	// Overflow tells what a Collector had to leave out of Header.
	Overflow Overflow
}

// Decision is the outcome for one message.
type Decision struct {
	Action Action
	// DryRun is true when the action would be Convert but nothing is
	// changed; Edits is then empty.
	DryRun bool
	// Reason explains the action in words for logs and `bccguard check`.
	Reason string
	// SenderDomain is the normalized envelope sender domain.
	SenderDomain string
	// Rule names the config entry that selected the settings: "domains[N]
	// PATTERN", "internal_domains" or "default".
	Rule string
	// Settings are the effective settings; zero when no rule matched.
	Settings Settings
	// ToTotal and ToExternal count distinct To addresses.
	ToTotal, ToExternal int
	// CcTotal and CcExternal count distinct Cc addresses; only when
	// ConvertCc is set.
	CcTotal, CcExternal int
	// Moved is the number of distinct addresses removed from view.
	Moved int
	// To holds the distinct To addresses, for the audit log.
	To []Address
	// Parse says whether the address fields could be read.
	Parse ParseProblem
	// Edits are the header changes to make, in order.
	Edits []Edit
}

// Decide applies the policy to one message. It never panics on any input
// and always returns a decision; a header it cannot read is handled by the
// OnParseError setting.
func Decide(cfg *Config, msg Message) Decision {
	var d Decision
	sender := strings.TrimSpace(msg.Sender)
	sender = strings.TrimSuffix(strings.TrimPrefix(sender, "<"), ">")
	if sender == "" {
		d.Reason = "null sender (bounce or notification)"
		return d
	}
	if cfg.ExemptSenders[strings.ToLower(sender)] {
		d.Reason = "sender is in exempt_senders"
		return d
	}
	d.SenderDomain = addrDomain(sender)
	if d.SenderDomain == "" {
		d.Reason = "envelope sender has no domain"
		return d
	}
	settings, rule, reason := cfg.settingsFor(d.SenderDomain)
	if rule == "" {
		d.Reason = reason
		return d
	}
	d.Rule, d.Settings = rule, settings

	over := msg.Overflow.merge(measure(msg.Header))
	if over.any(settings.ConvertCc) {
		d.Parse = ParseTooLarge
		what := fmt.Sprintf("address fields over the limit of %d bytes or %d fields; not read", MaxAddressBytes, MaxAddressFields)
		if over.ToFields || settings.ConvertCc && over.CcFields {
			// Removing thousands of fields one by one would make Postfix
			// rescan the header for each: refuse instead of hiding.
			what = fmt.Sprintf("more than %d address fields; not read", MaxAddressFields)
			if settings.OnParseError == ParseErrorHide {
				d.Action = Tempfail
				d.Reason = what + "; too many to hide (on_parse_error is hide)"
				return d
			}
		}
		return onParseError(d, settings, what, countFields(msg.Header, settings.ConvertCc), msg.Header)
	}
	v := readVisible(cfg, msg.Header, settings.ConvertCc)
	d.ToTotal, d.ToExternal = v.to.total, v.to.external
	d.To = v.to.addrs
	d.CcTotal, d.CcExternal = v.cc.total, v.cc.external
	d.Parse = v.problem()
	if d.Parse == ParseUnreadable {
		return onParseError(d, settings, "an address field cannot be read", v, msg.Header)
	}

	total, external := v.to.total, v.to.external
	list := "To"
	if settings.ConvertCc {
		total, external = v.combined.total, v.combined.external
		list = "To and Cc"
	}
	counted := total
	if settings.Count == CountExternal {
		counted = external
	}
	switch {
	case external == 0:
		d.Reason = fmt.Sprintf("%s: %s, none external", list, plural(total, "address", "addresses"))
		return d
	case counted < settings.Threshold:
		d.Reason = fmt.Sprintf("%s: %s, %d external; below threshold %d (count: %s)",
			list, plural(total, "address", "addresses"), external, settings.Threshold, settings.Count)
		return d
	}
	d.Action = Convert
	d.Reason = fmt.Sprintf("%s: %s, %d external; threshold %d reached (count: %s)",
		list, plural(total, "address", "addresses"), external, settings.Threshold, settings.Count)
	return v.convert(d, settings, msg.Header)
}

// onParseError applies the on_parse_error setting to a message whose
// address fields could not be read (what says why).
func onParseError(d Decision, s Settings, what string, v *visible, h []Field) Decision {
	switch s.OnParseError {
	case ParseErrorTempfail:
		d.Action = Tempfail
		d.Reason = what + "; on_parse_error is tempfail"
		return d
	case ParseErrorAccept:
		d.Reason = what + "; on_parse_error is accept"
		return d
	}
	d.Action = Convert
	d.Reason = what + "; on_parse_error is hide"
	s.Move = MoveAll
	return v.convert(d, s, h)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// settingsFor selects the settings for a sender domain. It returns the rule
// name, or "" with the reason why the sender is not checked.
func (c *Config) settingsFor(domain string) (Settings, string, string) {
	switch {
	case c.HasDomains:
		r, ok := c.ruleFor(domain)
		if !ok {
			return Settings{}, "", "sender domain " + domain + " is not in domains"
		}
		name := fmt.Sprintf("domains[%d] %s", r.Index, r.Pattern)
		if !r.Enabled {
			return Settings{}, "", "sender domain disabled by " + name
		}
		return r.Settings, name, ""
	case len(c.Internal) > 0:
		if !c.Internal.Contains(domain) {
			return Settings{}, "", "sender domain " + domain + " is not in internal_domains"
		}
		return c.Default, "internal_domains", ""
	}
	return c.Default, "default", ""
}

// fieldSet is the parsed content of all fields with one name.
type fieldSet struct {
	fields []FieldAddresses
	values []string
	// addrs are the distinct addresses in order of appearance.
	addrs           []Address
	total, external int
	seen            dedupe
}

type visible struct {
	to, cc, combined fieldSet
	from             []Field
}

func (v *visible) problem() ParseProblem {
	p := ParseOK
	for _, fs := range [][]FieldAddresses{v.to.fields, v.cc.fields} {
		for _, f := range fs {
			switch f.Mode {
			case ParseFailed:
				return ParseUnreadable
			case ParsedLenient:
				p = ParseLenient
			}
		}
	}
	return p
}

// isAddressField reports whether a field is one the rule reads.
func isAddressField(name string, withCc bool) bool {
	return strings.EqualFold(name, "To") || withCc && strings.EqualFold(name, "Cc")
}

// countFields records how many To and Cc fields there are, without reading
// them, so that a conversion can replace every one.
func countFields(h []Field, withCc bool) *visible {
	v := &visible{}
	for _, f := range h {
		switch {
		case strings.EqualFold(f.Name, "To"):
			v.to.fields = append(v.to.fields, FieldAddresses{Mode: ParseFailed})
		case withCc && strings.EqualFold(f.Name, "Cc"):
			v.cc.fields = append(v.cc.fields, FieldAddresses{Mode: ParseFailed})
		case strings.EqualFold(f.Name, "From"):
			v.from = append(v.from, f)
		}
	}
	return v
}

func readVisible(cfg *Config, h []Field, withCc bool) *visible {
	v := &visible{}
	var combined dedupe
	for _, f := range h {
		var fs *fieldSet
		switch {
		case strings.EqualFold(f.Name, "To"):
			fs = &v.to
		case withCc && strings.EqualFold(f.Name, "Cc"):
			fs = &v.cc
		case strings.EqualFold(f.Name, "From"):
			v.from = append(v.from, f)
			continue
		default:
			continue
		}
		pa := ParseAddressField(f.Value)
		fs.fields = append(fs.fields, pa)
		fs.values = append(fs.values, f.Value)
		if fs.addrs == nil {
			fs.addrs = make([]Address, 0, len(pa.Addrs))
		}
		for _, a := range pa.Addrs {
			k := a.key()
			a.Internal = cfg.Internal.Contains(a.Domain)
			if withCc && combined.add(k) {
				v.combined.total++
				if !a.Internal {
					v.combined.external++
				}
			}
			// To and Cc de-duplicate separately: the same address may be
			// visible in both.
			if !fs.seen.add(k) {
				continue
			}
			fs.addrs = append(fs.addrs, a)
			fs.total++
			if !a.Internal {
				fs.external++
			}
		}
	}
	if !withCc {
		v.combined = v.to
	}
	return v
}

// dedupe is a set of address keys: a short list for the usual handful of
// addresses, a map once there are many, so that the cost stays linear.
type dedupe struct {
	arr   [8]string
	small []string
	m     map[string]struct{}
}

// add reports whether k was new.
func (d *dedupe) add(k string) bool {
	if d.m != nil {
		if _, ok := d.m[k]; ok {
			return false
		}
		d.m[k] = struct{}{}
		return true
	}
	for _, s := range d.small {
		if s == k {
			return false
		}
	}
	if len(d.small) < len(d.arr) {
		if d.small == nil {
			d.small = d.arr[:0]
		}
		d.small = append(d.small, k)
		return true
	}
	d.m = make(map[string]struct{}, 4*len(d.arr))
	for _, s := range d.small {
		d.m[s] = struct{}{}
	}
	d.m[k] = struct{}{}
	return true
}

// convert fills in the edits of a conversion.
func (v *visible) convert(d Decision, s Settings, h []Field) Decision {
	var edits []Edit
	toValue, toMoved := v.remaining(&v.to, s)
	d.Moved = toMoved
	if toValue == "" {
		toValue = v.replacementValue(s.Replacement)
	}
	edits = append(edits, Edit{Op: EditChange, Name: "To", Index: 1, Value: toValue})
	edits = append(edits, deleteRest("To", len(v.to.fields), 2)...)
	if s.ConvertCc && len(v.cc.fields) > 0 {
		ccValue, ccMoved := v.remaining(&v.cc, s)
		d.Moved += ccMoved
		first := 1
		if ccValue != "" {
			edits = append(edits, Edit{Op: EditChange, Name: "Cc", Index: 1, Value: ccValue})
			first = 2
		}
		edits = append(edits, deleteRest("Cc", len(v.cc.fields), first)...)
	}
	if s.DryRun {
		d.DryRun = true
		return d
	}
	if s.StampHeader != "" {
		edits = append(edits, Edit{Op: EditAdd, Name: s.StampHeader, Value: stampValue(d)})
	}
	d.Edits = edits
	return d
}

// displayNames decodes the display names of a field set's addresses with
// the full parser (the fast scanner does not decode them), keyed like
// Address.key. Only the rare paths that write addresses back need them.
func (fs *fieldSet) displayNames() map[string]string {
	names := map[string]string{}
	for _, v := range fs.values {
		list, err := mail.ParseAddressList(unfold(v))
		if err != nil {
			continue
		}
		for _, a := range list {
			names[Address{Addr: a.Address, Domain: addrDomain(a.Address)}.key()] = a.Name
		}
	}
	return names
}

// deleteRest deletes fields first..n of a name, the highest index first so
// that no deletion shifts the index of one still to come.
func deleteRest(name string, n, first int) []Edit {
	var edits []Edit
	for i := n; i >= first; i-- {
		edits = append(edits, Edit{Op: EditChange, Name: name, Index: i, Value: ""})
	}
	return edits
}

// remaining returns the value that stays in a converted field ("" when no
// address stays) and how many addresses were moved out of it. With
// MoveExternal the internal addresses stay, but only when every field of
// that name parsed strictly: a leniently read field cannot be re-written
// faithfully, so then every address leaves.
func (v *visible) remaining(fs *fieldSet, s Settings) (string, int) {
	if s.Move != MoveExternal {
		return "", fs.total
	}
	for _, f := range fs.fields {
		if f.Mode != ParsedStrict {
			return "", fs.total
		}
	}
	names := fs.displayNames()
	var keep []string
	for _, a := range fs.addrs {
		if a.Internal {
			a.Name = names[a.key()]
			keep = append(keep, formatAddress(a))
		}
	}
	return strings.Join(keep, ",\r\n "), fs.total - len(keep)
}

// formatAddress writes an address for a re-written field: the bare
// addr-spec when it has no display name, otherwise the name (RFC 2047
// encoded when not ASCII) and the address in angle brackets.
func formatAddress(a Address) string {
	ma := mail.Address{Name: a.Name, Address: a.Addr}
	if a.Name == "" {
		return strings.Trim(ma.String(), "<>")
	}
	return ma.String()
}

// replacementValue is the To value written when no address stays.
func (v *visible) replacementValue(r Replacement) string {
	switch r.Kind {
	case ReplaceGroup:
		return groupValue(r.Label)
	case ReplaceSender:
		for _, f := range v.from {
			list, err := mail.ParseAddressList(unfold(f.Value))
			if err == nil && len(list) > 0 {
				a := Address{Name: list[0].Name, Addr: list[0].Address}
				return formatAddress(a)
			}
		}
	}
	return "undisclosed-recipients:;"
}

func stampValue(d Decision) string {
	s := fmt.Sprintf("converted; to=%d external=%d moved=%d", d.ToTotal, d.ToExternal, d.Moved)
	if d.Settings.ConvertCc {
		s += fmt.Sprintf(" cc=%d cc_external=%d", d.CcTotal, d.CcExternal)
	}
	return s
}
