package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bccguard/bccguard/config"
	"github.com/bccguard/bccguard/policy"
	"github.com/bccguard/bccguard/split"
)

// checkResult is the --json output of `bccguard check`.
type checkResult struct {
	Action       string   `json:"action"`
	DryRun       bool     `json:"dry_run"`
	Reason       string   `json:"reason"`
	Sender       string   `json:"sender"`
	SenderSource string   `json:"sender_source"`
	SenderDomain string   `json:"sender_domain"`
	Rule         string   `json:"rule"`
	ToTotal      int      `json:"to_total"`
	ToExternal   int      `json:"to_external"`
	CcTotal      int      `json:"cc_total"`
	CcExternal   int      `json:"cc_external"`
	Moved        int      `json:"moved"`
	Parse        string   `json:"parse"`
	Recipients   []string `json:"recipients"`
	Headers      string   `json:"headers"`
	// Delivery is hide or split for a conversion, "" otherwise.
	Delivery string `json:"delivery"`
	// Copies is the number of copies a split makes (or would make).
	Copies int `json:"copies"`
	// SplitFallback says why a conversion the rule wants split is
	// hidden instead (max_recipients, max_message_bytes, message_id);
	// Delivery is then hide and Copies 0, as in the daemon's audit.
	SplitFallback string `json:"split_fallback,omitempty"`
	// splitWhy is SplitFallback's detail, for the text output.
	splitWhy string
	// copies are the recipients and the To each copy shows, for the text
	// output.
	copies []policy.Copy
}

func newCheckCmd() *cobra.Command {
	var (
		file   string
		from   string
		rcpts  []string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "check [FILE.eml | -]",
		Short: "Show what bccguard would do with one message",
		Long: "Run the daemon's policy code on one message (a file, or standard input) and print\n" +
			"the decision and the header block as it would leave. The envelope sender is --from,\n" +
			"else the Return-Path field (every delivered copy has one), else the From address;\n" +
			"the recipients default to the To, Cc and Bcc addresses. Exit status is 0 for any\n" +
			"decision, 1 on an error, 2 on bad usage.",
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := config.Load(file)
			if err != nil {
				return err
			}
			in := cmd.InOrStdin()
			name := "-"
			if len(args) == 1 && args[0] != "-" {
				name = args[0]
				f, err := os.Open(name)
				if err != nil {
					return fmt.Errorf("check: %w", err)
				}
				defer f.Close()
				in = f
			}
			raw, err := io.ReadAll(in)
			if err != nil {
				return fmt.Errorf("check: read %s: %w", name, err)
			}
			header, err := policy.ReadHeader(bytes.NewReader(raw))
			if err != nil {
				return fmt.Errorf("check: %s: %w", name, err)
			}
			source := sourceFlag
			if !cmd.Flags().Changed("from") {
				from, source = envelopeSender(header)
			}
			if len(rcpts) == 0 {
				rcpts = envelopeRecipients(header)
			}
			r := decide(c, from, rcpts, header, bodySize(raw))
			r.SenderSource = source
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			printResult(cmd.OutOrStdout(), r)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "config", "c", "", "config file (YAML); default: built-in defaults")
	f.StringVar(&from, "from", "", "envelope sender (default: the Return-Path field, else the From address; \"\" for a bounce)")
	f.StringArrayVar(&rcpts, "rcpt", nil, "envelope recipient, may be repeated (default: To, Cc and Bcc addresses)")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

// decide runs the same policy.Decide the daemon runs, and for a split the
// same split.Feasible (the limits and the Message-ID rule; the queue id is
// not known here), and shapes the outcome for printing. bodySize is the
// body as split.BodySize counts it.
func decide(cfg *config.Config, from string, rcpts []string, header []policy.Field, bodySize int64) checkResult {
	// The fields reach the policy through the same Collector the milter
	// session uses, so that its limits apply here too.
	var c policy.Collector
	for _, f := range header {
		c.Add(f.Name, f.Value)
	}
	m := c.Message(from)
	m.Recipients = rcpts
	d := policy.Decide(cfg.Policy, m)
	var fallback string
	var why error
	if d.Delivery == policy.DeliverySplit {
		size := bodySize
		for _, f := range header {
			size += split.FieldSize(f.Name, f.Value)
		}
		fallback, why = split.Feasible(cfg.Split, split.Message{Copies: len(d.Copies), Size: size, Header: header})
		if fallback != "" {
			// The daemon hides it: every recipient gets the original.
			d.Delivery, d.Copies = policy.DeliveryHide, nil
		}
	}
	edits := d.Edits
	if d.Delivery == policy.DeliverySplit {
		// What the remaining recipients get when every copy was handed
		// over.
		edits = d.SplitEdits
	}
	out := policy.Apply(dropBcc(header), edits)
	if rcpts == nil {
		rcpts = []string{}
	}
	return checkResult{
		Action:        d.Action.String(),
		DryRun:        d.DryRun,
		Reason:        d.Reason,
		Sender:        from,
		SenderDomain:  d.SenderDomain,
		Rule:          d.Rule,
		ToTotal:       d.ToTotal,
		ToExternal:    d.ToExternal,
		CcTotal:       d.CcTotal,
		CcExternal:    d.CcExternal,
		Moved:         d.Moved,
		Parse:         string(d.Parse),
		Recipients:    rcpts,
		Headers:       policy.FormatHeader(out),
		Delivery:      string(d.Delivery),
		Copies:        len(d.Copies),
		SplitFallback: fallback,
		splitWhy:      errString(why),
		copies:        d.Copies,
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// bodySize is the size of the body of raw (what follows the first empty
// line, as policy.ReadHeader reads it), as split.BodySize counts it.
func bodySize(raw []byte) int64 {
	for len(raw) > 0 {
		line := raw
		i := bytes.IndexByte(raw, '\n')
		if i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		if len(bytes.TrimRight(line, "\r")) == 0 {
			return split.BodySize(raw)
		}
	}
	return 0
}

// dropBcc removes the fields Postfix removes before delivery
// (message_drop_headers = bcc, content-length, resent-bcc, return-path by
// default), so that the printed header is the one recipients see.
func dropBcc(h []policy.Field) []policy.Field {
	var out []policy.Field
	for _, f := range h {
		switch strings.ToLower(f.Name) {
		case "bcc", "resent-bcc", "content-length", "return-path":
			continue
		}
		out = append(out, f)
	}
	return out
}

// Where `check` took the envelope sender from.
const (
	sourceFlag       = "--from"
	sourceReturnPath = "Return-Path"
	sourceFrom       = "From"
)

// envelopeSender is the sender the daemon saw, as far as the message
// tells: a delivered copy's Return-Path records the envelope sender (and
// differs from From for mail a script submitted without -f); otherwise the
// From address is the best guess.
func envelopeSender(h []policy.Field) (string, string) {
	for _, f := range h {
		if !strings.EqualFold(f.Name, "Return-Path") {
			continue
		}
		// The first field is the newest (a delivery agent adds it on top).
		return returnPath(f.Value), sourceReturnPath
	}
	return firstAddress(h, "From"), sourceFrom
}

// returnPath reads the address of a Return-Path value: "<>" is the null
// sender, also when written "< >", folded, or followed by a comment
// ("<>  (bounce)"), as RFC 5322's CFWS allows.
func returnPath(value string) string {
	v := stripComments(value)
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.LastIndexByte(v, '>'); j > i {
			v = v[i+1 : j]
		}
	}
	v = strings.Join(strings.Fields(v), "")
	if v == "" {
		return ""
	}
	if pa := policy.ParseAddressField("<" + v + ">"); len(pa.Addrs) > 0 {
		return pa.Addrs[0].Addr
	}
	return v
}

// stripComments removes RFC 5322 comments (nested, with quoted pairs)
// outside quoted strings.
func stripComments(s string) string {
	var b strings.Builder
	depth, quoted := 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && (quoted || depth > 0) && i+1 < len(s):
			if depth == 0 {
				b.WriteByte(c)
				b.WriteByte(s[i+1])
			}
			i++
			continue
		case depth == 0 && c == '"':
			quoted = !quoted
		case !quoted && c == '(':
			depth++
			continue
		case !quoted && depth > 0 && c == ')':
			depth--
			continue
		}
		if depth == 0 {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func firstAddress(h []policy.Field, name string) string {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			if pa := policy.ParseAddressField(f.Value); len(pa.Addrs) > 0 {
				return pa.Addrs[0].Addr
			}
		}
	}
	return ""
}

func envelopeRecipients(h []policy.Field) []string {
	var out []string
	seen := map[string]bool{}
	for _, f := range h {
		switch strings.ToLower(f.Name) {
		case "to", "cc", "bcc":
			for _, a := range policy.ParseAddressField(f.Value).Addrs {
				if a.Domain == "" {
					continue // a bare name: Postfix would add $myorigin
				}
				if k := strings.ToLower(a.Addr); !seen[k] {
					seen[k] = true
					out = append(out, a.Addr)
				}
			}
		}
	}
	return out
}

func printResult(w io.Writer, r checkResult) {
	action := r.Action
	if r.DryRun {
		action += " (dry run: nothing is changed)"
	}
	sender := r.Sender
	if sender == "" {
		sender = "<> (null sender)"
	}
	rule := r.Rule
	if rule == "" {
		rule = "none"
	}
	fmt.Fprintf(w, "action:     %s\n", action)
	fmt.Fprintf(w, "reason:     %s\n", r.Reason)
	source := "from " + r.SenderSource
	if r.SenderSource == sourceFrom {
		source = "from the From field, not the envelope: see --from"
	}
	fmt.Fprintf(w, "sender:     %s (%s; rule: %s)\n", sender, source, rule)
	fmt.Fprintf(w, "to:         %d addresses, %d external, %d moved out of sight\n", r.ToTotal, r.ToExternal, r.Moved)
	if r.Parse != "" {
		fmt.Fprintf(w, "parse:      %s\n", r.Parse)
	}
	if r.Delivery == string(policy.DeliverySplit) {
		fmt.Fprintf(w, "delivery:   split into %d copies, each showing only its recipient:\n", r.Copies)
		own := map[string]bool{}
		for _, c := range r.copies {
			fmt.Fprintf(w, "  %s  To: %s\n", c.Rcpts[0], strings.ReplaceAll(c.To, "\r\n", ""))
			for _, a := range c.Rcpts {
				own[a] = true
			}
		}
		var rest []string
		for _, a := range r.Recipients {
			if !own[a] {
				rest = append(rest, a)
			}
		}
		if len(rest) == 0 {
			fmt.Fprintf(w, "recipients: none left; the original below is discarded\n")
		} else {
			fmt.Fprintf(w, "recipients: the original below goes to %d: %s\n", len(rest), strings.Join(rest, ", "))
		}
	} else {
		if r.SplitFallback != "" {
			fmt.Fprintf(w, "delivery:   the rule says split; would hide instead: %s (%s)\n", r.SplitFallback, r.splitWhy)
		} else if r.Delivery != "" {
			fmt.Fprintf(w, "delivery:   %s\n", r.Delivery)
		}
		fmt.Fprintf(w, "recipients: %d on the envelope, unchanged: %s\n", len(r.Recipients), strings.Join(r.Recipients, ", "))
	}
	fmt.Fprintf(w, "\n%s", strings.ReplaceAll(r.Headers, "\r\n", "\n"))
}
