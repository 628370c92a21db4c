package doctor

import (
	"fmt"
	"strings"

	gomilter "github.com/d--j/go-milter"
)

// checkRecipientAdders: with delivery: split, bccguard discards the
// original once every recipient it saw has its copy. It sees the
// recipients of the SMTP session (RCPT events); a milter listed before it
// that adds recipients at end-of-message (an archiving milter) adds them
// to that original, so they go with it. Each milter before bccguard is
// asked, as Postfix asks it, whether it may add recipients.
func checkRecipientAdders(e *env) []Result {
	if e.cfg.Policy == nil || !e.cfg.Policy.UsesSplit() {
		return nil
	}
	var out []Result
	asked := map[string]bool{}
	for _, p := range e.paths {
		if p.bccguard <= 0 || p.noMilters {
			continue
		}
		for i, m := range p.entries[:p.bccguard] {
			ep := p.endpoints[i]
			if ep.network == "" || asked[ep.describe(m.Addr)] {
				continue
			}
			asked[ep.describe(m.Addr)] = true
			s, err := e.negotiate(ep)
			if err != nil {
				out = append(out, Result{Status: Warn, Check: "recipient adders",
					Message: fmt.Sprintf("%s: %s lists %s before bccguard, and it could not be asked whether it adds recipients: %v.", p.what, p.where(p.param), m.Addr, err),
					Fix:     "check by hand that " + m.Addr + " adds no recipients (delivery: split discards the original when every recipient bccguard saw has a copy)."})
				continue
			}
			adds := s.ActionOption(gomilter.OptAddRcpt) || s.ActionOption(gomilter.OptAddRcptWithArgs)
			s.Close()
			if adds {
				out = append(out, Result{Status: Warn, Check: "recipient adders",
					Message: fmt.Sprintf("%s: %s lists %s before bccguard, and it may add recipients: bccguard does not see them, and when every recipient it saw has its copy, delivery: split discards the original and with it the recipients %s added.", p.what, p.where(p.param), m.Addr, m.Addr),
					Fix:     "if " + m.Addr + " adds recipients (archiving), add them with Postfix's recipient_bcc_maps or sender_bcc_maps instead, or use delivery: hide."})
			}
		}
	}
	if len(out) == 0 {
		out = append(out, Result{Check: "recipient adders", Message: "delivery: split: no milter before bccguard may add recipients."})
	}
	return append(out, checkAutomaticBcc(e)...)
}

// checkAutomaticBcc: Postfix's cleanup adds automatic BCC recipients to
// every message it receives, the copies handed back included (the
// reinjection service must keep address mappings, and no_address_mappings
// is also what turns automatic BCC off). So the archive receives every
// copy, and the original when it still goes to someone: nothing lost,
// but not one message either. Said, not warned: each is what a recipient
// received.
func checkAutomaticBcc(e *env) []Result {
	var set []string
	for _, name := range []string{"always_bcc", "sender_bcc_maps", "recipient_bcc_maps"} {
		if strings.TrimSpace(e.postfix.Main[name]) != "" {
			set = append(set, name)
		}
	}
	if len(set) == 0 {
		return nil
	}
	return []Result{{Check: "automatic bcc",
		Message: fmt.Sprintf("%s set in main.cf: with delivery: split, the automatic BCC recipients also receive the copies bccguard makes (each is a message Postfix receives anew), and the original when it still goes to someone.", joinAnd(set))}}
}
