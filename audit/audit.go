// Package audit writes one log record per decision, in a form an admin can
// join with Postfix's own log by queue id, and with addresses shown only as
// far as the admin chose: they are personal information.
package audit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/bccguard/bccguard/policy"
)

// Mode says how addresses appear in the audit log.
type Mode string

const (
	// ModeDomain shows the domain of each address only (the default).
	ModeDomain Mode = "domain"
	// ModeNone shows no addresses at all, only counts.
	ModeNone Mode = "none"
	// ModeHash shows a keyed HMAC-SHA256 of each address, so that one
	// address can be traced ("did mail to X get converted?") without the
	// log storing it.
	ModeHash Mode = "hash"
	// ModeFull shows the addresses.
	ModeFull Mode = "full"
)

// ParseMode checks a configured mode.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(s)); m {
	case ModeDomain, ModeNone, ModeHash, ModeFull:
		return m, nil
	}
	return "", fmt.Errorf("%q is not one of domain, none, hash, full", s)
}

// Options configure the audit record.
type Options struct {
	// Mode says how addresses appear.
	Mode Mode
	// HashKey is the HMAC key for ModeHash.
	HashKey []byte
}

// Record is what happened to one message.
type Record struct {
	// QueueID is Postfix's queue id (macro i).
	QueueID string
	// MessageID is the Message-ID field; it follows a message whose
	// queue id changes (pickup gives a local submission a new one on each
	// retry while bccguard is down).
	MessageID string
	// Sender is the envelope sender.
	Sender string
	// Decision is the policy's outcome.
	Decision policy.Decision
	// Duration is the time from end-of-message to the reply.
	Duration time.Duration
	// Notice says what became of the notice to the sender at decision
	// time: "queued", "suppressed" (min_interval) or "failed" (queue
	// full); "" when none was due. A "notice" record follows a queued one.
	Notice string
	// Split is what became of a split; nil when none was attempted.
	Split *Split
}

// Split is the outcome of delivery: split for one message.
type Split struct {
	// Copies is the number of copies handed over to Postfix, now or on an
	// earlier attempt of the same message (Before of them).
	Copies, Before int
	// Left is the number of envelope recipients left on the original.
	Left int
	// Discarded is set when nobody was left and the original was
	// discarded.
	Discarded bool
	// Fallback says why some or all copies were not made ("" when all
	// were).
	Fallback string
}

// Log writes the record: conversions and temporary failures at info,
// passes at debug, and any message whose address fields could not be read
// (or were over the size limits) at warn, whatever the action, so that an
// admin sees on_parse_error at work.
func Log(ctx context.Context, log *slog.Logger, o Options, r Record) {
	d := r.Decision
	level := slog.LevelInfo
	switch {
	case d.Parse == policy.ParseUnreadable || d.Parse == policy.ParseTooLarge:
		level = slog.LevelWarn
	case r.Split != nil && r.Split.Fallback != "":
		level = slog.LevelWarn
	case d.Action == policy.Pass:
		level = slog.LevelDebug
	}
	if !log.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 20)
	attrs = append(attrs,
		slog.String("queue_id", r.QueueID),
	)
	if id := o.messageID(r.MessageID); id != "" {
		attrs = append(attrs, slog.String("message_id", id))
	}
	attrs = append(attrs,
		slog.String("action", d.Action.String()),
		slog.Bool("dry_run", d.DryRun),
	)
	if s := o.address(r.Sender); s != "" {
		attrs = append(attrs, slog.String("sender", s))
	}
	attrs = append(attrs,
		slog.String("sender_domain", d.SenderDomain),
		slog.Int("to_total", d.ToTotal),
		slog.Int("to_external", d.ToExternal),
		slog.Int("moved", d.Moved),
	)
	if d.Settings.ConvertCc {
		attrs = append(attrs, slog.Int("cc_total", d.CcTotal), slog.Int("cc_external", d.CcExternal))
	}
	if d.ResentTotal > 0 {
		attrs = append(attrs, slog.Int("resent_total", d.ResentTotal), slog.Int("resent_external", d.ResentExternal))
	}
	if o.Mode != ModeNone && len(d.To) > 0 {
		attrs = append(attrs, slog.Any("to", o.addresses(d.To)))
	}
	if d.Rule != "" {
		s := d.Settings
		attrs = append(attrs,
			slog.String("rule", d.Rule),
			slog.Int("threshold", s.Threshold),
			slog.String("count", string(s.Count)),
			slog.String("move", string(s.Move)),
			slog.Bool("convert_cc", s.ConvertCc),
		)
	}
	if d.Parse != policy.ParseOK {
		attrs = append(attrs, slog.String("parse", string(d.Parse)))
	}
	if d.Delivery != "" {
		attrs = append(attrs, slog.String("delivery", string(d.Delivery)))
	}
	if sp := r.Split; sp != nil {
		attrs = append(attrs, slog.Int("copies", sp.Copies), slog.Int("copies_before", sp.Before),
			slog.Int("left_on_original", sp.Left), slog.Bool("original_discarded", sp.Discarded))
		if sp.Fallback != "" {
			attrs = append(attrs, slog.String("split_fallback", sp.Fallback))
		}
	} else if d.Delivery == policy.DeliverySplit {
		attrs = append(attrs, slog.Int("copies", len(d.Copies)))
	}
	if r.Notice != "" {
		attrs = append(attrs, slog.String("notice", r.Notice))
	}
	attrs = append(attrs,
		slog.String("reason", d.Reason),
		slog.Duration("duration", r.Duration),
	)
	log.LogAttrs(ctx, level, "decision", attrs...)
}

// address renders one address in the configured mode; "" means leave it
// out (the sender domain is logged on its own).
func (o Options) address(a string) string {
	switch o.Mode {
	case ModeFull:
		return a
	case ModeHash:
		if a == "" {
			return ""
		}
		return o.hash(a)
	}
	return ""
}

func (o Options) hash(a string) string {
	m := hmac.New(sha256.New, o.HashKey)
	m.Write([]byte(strings.ToLower(a)))
	return "hmac:" + hex.EncodeToString(m.Sum(nil)[:16])
}

// maxListed bounds the To list in one record: a message to 500 partners
// would otherwise write a line of many kilobytes, and the counts already
// say how many there were.
const maxListed = 20

// addresses renders the To addresses: their domains (each once), their
// hashes, or the addresses themselves; at most maxListed, then "+N more".
func (o Options) addresses(as []policy.Address) []string {
	out := make([]string, 0, min(len(as), maxListed+1))
	seen := map[string]bool{}
	for i, a := range as {
		if len(out) == maxListed {
			out = append(out, fmt.Sprintf("+%d more addresses", len(as)-i))
			break
		}
		var s string
		switch o.Mode {
		case ModeFull:
			s = a.Addr
		case ModeHash:
			s = o.hash(a.Addr)
		default:
			s = a.Domain
			if seen[s] {
				continue
			}
			seen[s] = true
		}
		out = append(out, s)
	}
	return out
}

// HashAddress returns what ModeHash logs for an address, so that an admin
// can look one up: `bccguard audit-hash ADDRESS` prints it.
func HashAddress(key []byte, addr string) string {
	return Options{Mode: ModeHash, HashKey: key}.hash(addr)
}
