package policy

import (
	"fmt"
	"strconv"
	"strings"
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
	// Recipients are the envelope recipients (RCPT TO) without angle
	// brackets; only delivery: split reads them.
	Recipients []string
}

// Decision is the outcome for one message.
type Decision struct {
	// Action is what happens to the message.
	Action Action
	// DryRun is true when the action would be Convert but nothing is
	// changed; Edits is then empty.
	DryRun bool
	// Reason explains the action in words for logs and `bccguard check`.
	Reason string
	// Passed is set when the message leaves unconverted: why, as a fixed
	// category (Reason says it in words).
	Passed PassReason
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
	// ResentTotal and ResentExternal count distinct Resent-To addresses
	// (with Resent-Cc under ConvertCc).
	ResentTotal, ResentExternal int
	// Moved is the number of distinct addresses removed from view.
	Moved int
	// To holds the distinct To addresses, for the audit log.
	To []Address
	// Parse says whether the address fields could be read.
	Parse ParseProblem
	// Edits are the header changes to make, in order. With delivery:
	// split they are the fallback: what the original gets when no copy
	// could be handed over.
	Edits []Edit
	// Delivery is how a Convert reaches the moved recipients: split only
	// when copies are to be made (also in a dry run); "" unless Convert.
	Delivery DeliveryMode
	// Copies are the copies of a split, one per moved recipient.
	Copies []Copy
	// SplitEdits are the original's header changes once copies were
	// handed over: Edits with the stamp saying split.
	SplitEdits []Edit
}

// Decide applies the policy to one message. It never panics on any input
// and always returns a decision; a header it cannot read is handled by the
// OnParseError setting.
func Decide(cfg *Config, msg Message) Decision {
	var d Decision
	sender := strings.TrimSpace(msg.Sender)
	sender = strings.TrimSuffix(strings.TrimPrefix(sender, "<"), ">")
	if sender == "" {
		d.Reason, d.Passed = "null sender (bounce or notification)", PassNullSender
		return d
	}
	if cfg.ExemptSenders[strings.ToLower(sender)] {
		d.Reason, d.Passed = "sender is in exempt_senders", PassExempt
		return d
	}
	d.SenderDomain = addrDomain(sender)
	if d.SenderDomain == "" {
		d.Reason, d.Passed = "envelope sender has no domain", PassSenderNotCovered
		return d
	}
	settings, rule, reason, passed := cfg.settingsFor(d.SenderDomain)
	if rule == "" {
		d.Reason, d.Passed = reason, passed
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
		return onParseError(d, settings, what, readVisible(cfg, msg.Header, settings.ConvertCc, false, false))
	}
	v := readVisible(cfg, msg.Header, settings.ConvertCc, true, settings.Count == CountDomains)
	d.ToTotal, d.ToExternal = v.main.to.total, v.main.to.external
	d.To = v.main.to.addrs
	d.CcTotal, d.CcExternal = v.main.cc.total, v.main.cc.external
	resentList := v.list(true, settings.ConvertCc)
	d.ResentTotal, d.ResentExternal = resentList.total, resentList.external
	d.Parse = v.problem()
	if d.Parse == ParseUnreadable {
		return onParseError(d, settings, "an address field cannot be read", v)
	}

	// Resent-To is a list of its own (redirected mail): counted apart,
	// against the same threshold, and hidden the same way.
	list := "To"
	if settings.ConvertCc {
		list = "To and Cc"
	}
	main, reason, passed := judge(settings, v.list(false, settings.ConvertCc), list)
	resent := false
	if v.resent != noResent {
		list = "Resent-To"
		if settings.ConvertCc {
			list = "Resent-To and Resent-Cc"
		}
		var r string
		var p PassReason
		resent, r, p = judge(settings, resentList, list)
		reason += "; " + r
		if p == PassBelowThreshold {
			// An outside address was seen in one list or the other.
			passed = p
		}
	}
	d.Reason = reason
	if !main && !resent {
		d.Passed = passed
		return d
	}
	d.Action = Convert
	d = dryRunPassed(v.convert(d, settings, main, resent))
	if settings.Delivery == DeliverySplit && main {
		// Copies are made for the To list; Resent-To alone is hidden.
		return v.split(d, settings, msg.Recipients)
	}
	return d
}

// judge applies the threshold to the counts of one visible list.
func judge(s Settings, t *tally, list string) (bool, string, PassReason) {
	// Concatenation rather than Sprintf: this is on every message's path.
	seen := list + ": " + plural(t.total, "address", "addresses") + ", " + strconv.Itoa(t.external) + " external"
	counted := t.total
	switch s.Count {
	case CountExternal:
		counted = t.external
	case CountDomains:
		// One address can name two organizations (a routed local part,
		// a domain joined across blanks); the count never exceeds the
		// addresses a reader sees.
		counted = min(t.orgs, t.total)
		seen += ", " + plural(t.orgs, "organization", "organizations")
	}
	threshold, count := strconv.Itoa(s.Threshold), " (count: "+string(s.Count)+")"
	switch {
	case t.external == 0:
		return false, seen, PassInternalOnly
	case counted < s.Threshold:
		return false, seen + "; below threshold " + threshold + count, PassBelowThreshold
	}
	return true, seen + "; threshold " + threshold + " reached" + count, ""
}

// onParseError applies the on_parse_error setting to a message whose
// address fields could not be read (what says why).
func onParseError(d Decision, s Settings, what string, v *visible) Decision {
	switch s.OnParseError {
	case ParseErrorTempfail:
		d.Action = Tempfail
		d.Reason = what + "; on_parse_error is tempfail"
		return d
	case ParseErrorAccept:
		d.Reason, d.Passed = what+"; on_parse_error is accept", PassParseError
		return d
	}
	d.Action = Convert
	d.Reason = what + "; on_parse_error is hide"
	if s.Delivery == DeliverySplit {
		d.Reason += " (hide, not split)"
	}
	s.Move = MoveAll
	s.Delivery = DeliveryHide
	d = dryRunPassed(v.convert(d, s, true, len(v.resent.to.fields) > 0 || s.ConvertCc && len(v.resent.cc.fields) > 0))
	d.Delivery = DeliveryHide
	return d
}

// dryRunPassed marks a conversion that dry_run leaves undone.
func dryRunPassed(d Decision) Decision {
	if d.DryRun {
		d.Passed = PassDryRun
	}
	return d
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// settingsFor selects the settings for a sender domain. It returns the rule
// name, or "" with the reason why the sender is not checked.
func (c *Config) settingsFor(domain string) (Settings, string, string, PassReason) {
	switch {
	case c.HasDomains:
		r, ok := c.ruleFor(domain)
		if !ok {
			return Settings{}, "", "sender domain " + domain + " is not in domains", PassSenderNotCovered
		}
		name := fmt.Sprintf("domains[%d] %s", r.Index, r.Pattern)
		if !r.Enabled {
			return Settings{}, "", "sender domain disabled by " + name, PassSenderDisabled
		}
		return r.Settings, name, "", NotPassed
	case len(c.Internal) > 0:
		if !c.Internal.Contains(domain) {
			return Settings{}, "", "sender domain " + domain + " is not in internal_domains", PassSenderNotCovered
		}
		return c.Default, "internal_domains", "", NotPassed
	}
	return c.Default, "default", "", NotPassed
}
