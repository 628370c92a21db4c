package doctor

import (
	"fmt"

	"github.com/bccguard/bccguard/policy"
)

// checkOrigin: mail submitted locally without -f (scripts, web
// applications, cron) has the envelope sender user@$myorigin; if no rule
// covers that domain, such mail is never checked.
func checkOrigin(e *env) []Result {
	var out []Result
	for _, param := range []string{"myorigin", "myhostname"} {
		domain := e.postfix.Main[param]
		if param == "myhostname" && domain == e.postfix.Main["myorigin"] {
			continue // the same domain, judged on the myorigin line
		}
		d := policy.Decide(e.cfg.Policy, policy.Message{Sender: "root@" + domain})
		r := Result{Check: param}
		switch d.Passed {
		case policy.PassSenderNotCovered, policy.PassSenderDisabled:
			r.Status = Fail
			if param == "myhostname" {
				// Only mail that names the host itself carries it; the
				// common case, $myorigin, is checked on its own line.
				r.Status = Warn
			}
			who := "mail that scripts and web applications submit without -f (sender user@" + domain + ")"
			if param == "myhostname" {
				who = "mail with a sender user@" + domain + " (from daemons that name the host)"
			}
			r.Message = fmt.Sprintf("%s = %s: %s: %s passes unchecked.", param, domain, d.Reason, who)
			r.Fix = "set myorigin = <the organization's mail domain> in main.cf, or add " + domain + " to domains (or internal_domains) in " + e.cfg.Name() + "."
		default:
			r.Message = fmt.Sprintf("%s = %s is covered (rule %s).", param, domain, d.Rule)
			if d.Rule == "" {
				r.Message = fmt.Sprintf("%s = %s: %s.", param, domain, d.Reason)
			}
		}
		out = append(out, r)
	}
	return out
}
