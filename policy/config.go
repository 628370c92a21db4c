package policy

import (
	"fmt"
	"mime"
	"strings"
)

// CountMode says which To addresses count towards Threshold.
type CountMode string

const (
	// CountAll counts every address and needs at least one external one.
	CountAll CountMode = "all"
	// CountExternal counts only external addresses.
	CountExternal CountMode = "external"
	// CountDomains counts organizations: distinct domains, all internal
	// addresses counting together as one; at least one must be external.
	CountDomains CountMode = "domains"
)

// MoveMode says which addresses leave the visible header on conversion.
type MoveMode string

const (
	// MoveAll removes every address from the converted field.
	MoveAll MoveMode = "all"
	// MoveExternal removes only external addresses; internal ones stay.
	MoveExternal MoveMode = "external"
)

// ParseErrorAction says what happens when a To field cannot be read even
// by the lenient extractor.
type ParseErrorAction string

const (
	// ParseErrorHide treats the message as converted: To is replaced.
	ParseErrorHide ParseErrorAction = "hide"
	// ParseErrorTempfail refuses the message with a temporary failure.
	ParseErrorTempfail ParseErrorAction = "tempfail"
	// ParseErrorAccept lets the message pass unchanged.
	ParseErrorAccept ParseErrorAction = "accept"
)

// DeliveryMode says how a converted message reaches the moved recipients.
type DeliveryMode string

const (
	// DeliveryHide sends one message whose To no longer shows them.
	DeliveryHide DeliveryMode = "hide"
	// DeliverySplit gives every envelope recipient among the moved To
	// addresses a copy of its own, whose To shows only them (and the To
	// addresses that stay visible); the others get the hidden original.
	DeliverySplit DeliveryMode = "split"
)

// ReplacementKind is the kind of To value written after a conversion.
type ReplacementKind int

const (
	// ReplaceUndisclosed writes "undisclosed-recipients:;".
	ReplaceUndisclosed ReplacementKind = iota
	// ReplaceSender writes the message's From address.
	ReplaceSender
	// ReplaceGroup writes an empty group "LABEL:;".
	ReplaceGroup
)

// Replacement is the parsed form of the replacement setting.
type Replacement struct {
	// Kind selects the form.
	Kind ReplacementKind
	// Label is the group name for ReplaceGroup.
	Label string
}

// ParseReplacement parses "undisclosed", "sender" or "group:LABEL".
func ParseReplacement(s string) (Replacement, error) {
	switch {
	case s == "undisclosed":
		return Replacement{Kind: ReplaceUndisclosed}, nil
	case s == "sender":
		return Replacement{Kind: ReplaceSender}, nil
	case strings.HasPrefix(s, "group:"):
		label := strings.TrimSpace(strings.TrimPrefix(s, "group:"))
		if label == "" {
			return Replacement{}, fmt.Errorf("group label is empty")
		}
		if strings.ContainsAny(label, "\r\n\x00") {
			return Replacement{}, fmt.Errorf("group label contains a line break or NUL")
		}
		return Replacement{Kind: ReplaceGroup, Label: label}, nil
	}
	return Replacement{}, fmt.Errorf("%q is not one of undisclosed, sender, group:LABEL", s)
}

// String returns the setting as written in the config.
func (r Replacement) String() string {
	switch r.Kind {
	case ReplaceSender:
		return "sender"
	case ReplaceGroup:
		return "group:" + r.Label
	}
	return "undisclosed"
}

// groupValue is the header value of an empty group named label: an
// encoded-word when the label is not ASCII, a quoted string when it holds
// characters that are special in a phrase.
func groupValue(label string) string {
	for i := 0; i < len(label); i++ {
		if label[i] >= 0x80 {
			return mime.BEncoding.Encode("utf-8", label) + ":;"
		}
	}
	if strings.ContainsAny(label, "()<>[]:;@\\,.\"") {
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(label) + `":;`
	}
	return label + ":;"
}

// Settings are the policy values that apply to one sender domain.
type Settings struct {
	// Threshold is the number of To addresses needed to trigger.
	Threshold int
	// Count says which addresses count towards Threshold.
	Count CountMode
	// Move says which addresses leave the visible header.
	Move MoveMode
	// ConvertCc applies the rule to Cc as well: To and Cc are then counted
	// together as one visible list, and both are converted.
	ConvertCc bool
	// Replacement is what To reads when no address stays in it.
	Replacement Replacement
	// OnParseError applies when an address field cannot be read.
	OnParseError ParseErrorAction
	// DryRun decides and reports, but changes nothing.
	DryRun bool
	// StampHeader is added to converted mail with counts only; "" = none.
	StampHeader string
	// Delivery is hide or split.
	Delivery DeliveryMode
	// NotifySender asks for a notice to the envelope sender after a
	// conversion (or a dry-run one). The policy only carries it in the
	// decision: the notice package acts on it.
	NotifySender bool
	// NotifyCopyTo are addresses that receive a copy of every notice sent
	// under this rule (a section's security manager). Shared between
	// snapshots: never modified after the config is built.
	NotifyCopyTo []string
}

// DefaultSettings are the built-in defaults, taken from the seed policy:
// two or more To addresses with at least one outside party.
func DefaultSettings() Settings {
	return Settings{
		Threshold:    2,
		Count:        CountAll,
		Move:         MoveAll,
		Replacement:  Replacement{Kind: ReplaceUndisclosed},
		OnParseError: ParseErrorHide,
		StampHeader:  "X-BCCGuard",
		Delivery:     DeliveryHide,
	}
}

// DomainRule is one entry of the domains list, with its settings already
// merged over the policy defaults.
type DomainRule struct {
	// Index is the entry's position in the config's domains list.
	Index int
	// Pattern is the sender domain pattern.
	Pattern DomainPattern
	// Enabled is false for an entry that turns the check off.
	Enabled bool
	// Settings are the policy section with this entry's keys laid over.
	Settings Settings
}

// Config is an immutable policy configuration. Build it once, share it
// between goroutines, never modify it after use.
type Config struct {
	// Internal holds the organization's own domains.
	Internal DomainSet
	// Domains lists the sender domains whose mail is checked. When
	// HasDomains is false, senders in Internal are checked with Default;
	// when Internal is empty too, every sender is.
	Domains    []DomainRule
	HasDomains bool
	// Default applies to senders matched without a domains entry.
	Default Settings
	// ExemptSenders holds lower-cased envelope sender addresses that are
	// never converted.
	ExemptSenders map[string]bool
}

// UsesSplit reports whether some rule may split a message: the milter then
// asks Postfix for the recipients and the body, which it otherwise never
// needs.
func (c *Config) UsesSplit() bool {
	switch {
	case c.HasDomains:
		for _, r := range c.Domains {
			if r.Enabled && r.Settings.Delivery == DeliverySplit {
				return true
			}
		}
		return false
	}
	return c.Default.Delivery == DeliverySplit
}

// ruleFor finds the domains entry for a normalized sender domain: the most
// specific matching pattern wins.
func (c *Config) ruleFor(domain string) (DomainRule, bool) {
	best, found := DomainRule{}, false
	for _, r := range c.Domains {
		if r.Pattern.Match(domain) && (!found || r.Pattern.specificity() > best.Pattern.specificity()) {
			best, found = r, true
		}
	}
	return best, found
}
