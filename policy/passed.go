package policy

// PassReason is a small fixed category for a message that leaves
// unconverted, so that unchecked traffic can be counted and graphed
// (bccguard_passed_total{reason}); Decision.Reason says the same in words.
type PassReason string

const (
	// NotPassed: the message is converted or refused.
	NotPassed PassReason = ""
	// PassNullSender: a bounce or notification (MAIL FROM:<>).
	PassNullSender PassReason = "null_sender"
	// PassExempt: the sender is in exempt_senders.
	PassExempt PassReason = "exempt"
	// PassSenderNotCovered: the sender domain is missing, or matches
	// neither domains nor internal_domains. Local submissions from an
	// unqualified $myorigin end up here.
	PassSenderNotCovered PassReason = "sender_not_covered"
	// PassSenderDisabled: the sender domain's rule has enabled: false.
	PassSenderDisabled PassReason = "sender_disabled"
	// PassInternalOnly: no external address in the list read.
	PassInternalOnly PassReason = "internal_only"
	// PassBelowThreshold: external addresses, but fewer than the threshold.
	PassBelowThreshold PassReason = "below_threshold"
	// PassParseError: an unreadable list with on_parse_error: accept.
	PassParseError PassReason = "parse_error_accept"
	// PassDryRun: the message would have been converted (dry_run).
	PassDryRun PassReason = "dry_run"
)

// PassReasons lists every reason, for metrics that show each at zero.
var PassReasons = []PassReason{PassNullSender, PassExempt, PassSenderNotCovered, PassSenderDisabled,
	PassInternalOnly, PassBelowThreshold, PassParseError, PassDryRun}
