package doctor

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/bccguard/bccguard/policy"
)

// checkOrigin: mail submitted locally without -f (scripts, web
// applications, cron) has the envelope sender user@$myorigin; if no rule
// covers that domain, such mail is never checked.
func checkOrigin(e *env) []Result {
	var out []Result
	origin, originFile, err := myorigin(e.postfix.Main["myorigin"])
	if err != nil {
		return []Result{{Status: Fail, Check: "myorigin",
			Message: fmt.Sprintf("myorigin = %s: %v: Postfix cannot name the sender of mail submitted without -f.", originFile, err),
			Fix:     "put the organization's mail domain on the first line of " + originFile + "."}}
	}
	for _, param := range []string{"myorigin", "myhostname"} {
		domain, shown := origin, "myorigin = "+origin
		if originFile != "" {
			shown += " (from " + originFile + ")"
		}
		if param == "myhostname" {
			domain, shown = e.postfix.Main[param], "myhostname = "+e.postfix.Main[param]
			if domain == origin {
				continue // the same domain, judged on the myorigin line
			}
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
			r.Message = fmt.Sprintf("%s: %s: %s passes unchecked.", shown, d.Reason, who)
			setIt := "set myorigin = <the organization's mail domain> in main.cf"
			if originFile != "" && param == "myorigin" {
				// Debian: myorigin = /etc/mailname; the file is what to edit.
				setIt = "put the organization's mail domain in " + originFile
			}
			r.Fix = setIt + ", or add " + domain + " to domains (or internal_domains) in " + e.cfg.Name() + "."
		default:
			r.Message = fmt.Sprintf("%s is covered (rule %s).", shown, d.Rule)
			if d.Rule == "" {
				r.Message = fmt.Sprintf("%s: %s.", shown, d.Reason)
			}
		}
		out = append(out, r)
	}
	return out
}

// myorigin returns the domain of $myorigin. Postfix reads a value that
// starts with "/" as a file whose first line is the domain (Debian ships
// myorigin = /etc/mailname); file is then that path.
func myorigin(value string) (domain, file string, err error) {
	if !strings.HasPrefix(value, "/") {
		return value, "", nil
	}
	f, err := os.Open(value)
	if err != nil {
		return "", value, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if sc.Scan() {
		domain = strings.TrimSpace(sc.Text())
	}
	if err := sc.Err(); err != nil {
		return "", value, err
	}
	if domain == "" {
		return "", value, fmt.Errorf("the file is empty")
	}
	return domain, value, nil
}
