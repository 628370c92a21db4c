package doctor

import (
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
)

// milterPath is one way mail enters Postfix, with the milter list that
// applies to it.
type milterPath struct {
	// what names the path for the report.
	what string
	// param is the milter list parameter: smtpd_milters or
	// non_smtpd_milters.
	param string
	// svc is the service whose -o overrides apply to param and to the
	// milter_* settings.
	svc *Service
	// chrooted says whether the daemon that connects runs chrooted.
	chrooted bool
	// entries is the milter list.
	entries []milterEntry
	// endpoints are where each entry leads, for this daemon.
	endpoints []endpoint
	// noMilters is set when receive_override_options turns milters off.
	noMilters bool
	// loopback marks an smtpd on a loopback address only: when a
	// content_filter is set, usually its return path, whose mail was
	// checked before.
	loopback bool
	// bccguard is the index of bccguard's entry, or -1.
	bccguard int
}

// milterPaths lists every smtpd service (smtpd_milters) and local
// submission through pickup and cleanup (non_smtpd_milters).
func milterPaths(pf *Postfix, listen endpoint) []*milterPath {
	var out []*milterPath
	add := func(p *milterPath, value string) {
		p.entries = parseMilters(value)
		p.bccguard = -1
		for i, m := range p.entries {
			ep, ok := pf.postfixEndpoint(m.Addr, p.chrooted)
			p.endpoints = append(p.endpoints, ep)
			if ok && p.bccguard < 0 && ep.same(listen) {
				p.bccguard = i
			}
		}
		out = append(out, p)
	}
	for _, s := range pf.Services {
		if s.Command != "smtpd" {
			continue
		}
		p := &milterPath{
			what: "smtpd " + s.ID(), param: "smtpd_milters", svc: s, chrooted: s.Chrooted(),
			noMilters: hasNoMilters(pf.Param(s, "receive_override_options")),
			loopback:  s.Loopback(),
		}
		add(p, pf.Param(s, "smtpd_milters"))
	}
	// sendmail(1) drops mail into maildrop; pickup hands it to the cleanup
	// service it names, which runs non_smtpd_milters.
	pickup := pf.Service("pickup", "unix")
	cleanupName := pf.Param(pickup, "cleanup_service_name")
	if cleanupName == "" {
		cleanupName = "cleanup"
	}
	cleanup := pf.Service(cleanupName, "unix")
	p := &milterPath{
		what: "local submission (sendmail, pickup)", param: "non_smtpd_milters", svc: cleanup,
		chrooted:  cleanup != nil && cleanup.Chrooted(),
		noMilters: hasNoMilters(pf.Param(pickup, "receive_override_options")),
	}
	add(p, pf.Param(cleanup, "non_smtpd_milters"))
	return out
}

func hasNoMilters(opts string) bool {
	return slices.Contains(strings.FieldsFunc(opts, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }), "no_milters")
}

// where says where a setting comes from: main.cf, or the service's -o.
func (p *milterPath) where(param string) string {
	if p.svc != nil {
		if _, ok := p.svc.Overrides[param]; ok {
			return "-o " + param + " of " + p.svc.ID() + " in master.cf"
		}
	}
	return param + " in main.cf"
}

// checkWiring: bccguard is in the milter list of every way in.
func checkWiring(e *env) []Result {
	var out []Result
	for _, p := range e.paths {
		r := Result{Check: p.param}
		chroot := ""
		if p.chrooted {
			chroot = ", chrooted"
		}
		switch {
		case p.noMilters:
			r.Status = Fail
			r.Message = fmt.Sprintf("%s: receive_override_options has no_milters: mail on this path is never checked.", p.what)
			r.Fix = "remove no_milters from " + p.where("receive_override_options") + "."
		case p.bccguard >= 0:
			r.Message = fmt.Sprintf("%s%s: %s has %s.", p.what, chroot, p.where(p.param),
				p.endpoints[p.bccguard].describe(p.entries[p.bccguard].Addr))
		default:
			r.Status = Fail
			r.Message = fmt.Sprintf("%s%s: bccguard (%s) is not in %s (%s): mail on this path is never checked.",
				p.what, chroot, e.cfg.Listen, p.where(p.param), p.describeList())
			r.Fix = "add " + e.postfixAddress(p) + " to " + p.where(p.param) + ", then postfix reload."
		}
		if r.Status == Fail && !p.noMilters && p.svc != nil && p.svc == e.reinjectService() {
			// delivery: split hands copies back here: bccguard must not
			// run on it (checkReinject says the rest).
			r.Status, r.Fix = OK, ""
			r.Message = fmt.Sprintf("smtpd %s is the reinjection service of delivery: split (reinject.address): without bccguard, as it must be.", p.svc.ID())
		}
		if cf := e.postfix.ContentFilter(); r.Status == Fail && p.loopback && cf != "" {
			// A content filter's return path (FILTER_README) carries mail
			// that passed the milters before; it is usually right there.
			// Without any content_filter, a loopback smtpd is something
			// else (a webmail's submission port) and its mail is unchecked.
			r.Status = Warn
			r.Message += " On a loopback-only smtpd this is right if it is the return path of the content filter (" + cf + ")."
			r.Fix = "none if this smtpd only takes mail back from the content filter; otherwise " + r.Fix
		}
		out = append(out, r)
	}
	return out
}

func (p *milterPath) describeList() string {
	if len(p.entries) == 0 {
		return "empty"
	}
	var s []string
	for i, m := range p.entries {
		s = append(s, p.endpoints[i].describe(m.Addr))
	}
	return strings.Join(s, ", ")
}

// postfixAddress is how main.cf must name bccguard's listen address for
// the daemon of p: below the queue directory when it runs chrooted.
func (e *env) postfixAddress(p *milterPath) string {
	if e.listen.network != "unix" {
		if e.listen.host == "" || isUnspecified(e.listen.host) {
			// Listening everywhere: Postfix on this machine uses loopback.
			return "inet:" + net.JoinHostPort("127.0.0.1", e.listen.port)
		}
		return e.cfg.Listen
	}
	if !p.chrooted {
		return "unix:" + e.listen.file
	}
	queue := path.Clean(e.postfix.Main["queue_directory"])
	if rel, ok := strings.CutPrefix(e.listen.file, queue+"/"); ok {
		return "unix:/" + rel
	}
	return fmt.Sprintf("the socket as the chrooted %s sees it (%s is outside queue_directory %s: listen on unix:%s/bccguard/bccguard.sock and name it unix:/bccguard/bccguard.sock, or set chroot to n for %s)",
		p.svc.Command, e.listen.file, queue, queue, p.svc.ID())
}

// setting returns a milter setting for bccguard's entry on p: the braced
// per-milter attribute, or the parameter as the service sees it.
func (e *env) setting(p *milterPath, attr, param string) (value, where string) {
	if v, ok := p.entries[p.bccguard].Attrs[attr]; ok {
		return v, attr + " in the braced entry of " + p.where(p.param)
	}
	return e.postfix.Param(p.svc, param), p.where(param)
}

// perValue runs judge on a setting for every path that has bccguard,
// merging paths with the same value and source into one line.
func (e *env) perValue(check, attr, param string, judge func(value, where, paths string) Result) []Result {
	type key struct{ value, where string }
	var order []key
	paths := map[key][]string{}
	for _, p := range e.paths {
		if p.bccguard < 0 || p.noMilters {
			continue
		}
		v, w := e.setting(p, attr, param)
		k := key{v, w}
		if _, ok := paths[k]; !ok {
			order = append(order, k)
		}
		paths[k] = append(paths[k], p.what)
	}
	if len(order) == 0 {
		// bccguard is on no path (a FAIL above); the main.cf value is
		// what will apply once it is added.
		k := key{e.postfix.Main[param], param + " in main.cf"}
		order, paths[k] = []key{k}, []string{"no path has bccguard yet"}
	}
	var out []Result
	for _, k := range order {
		r := judge(k.value, k.where, joinAnd(paths[k]))
		r.Check = check
		out = append(out, r)
	}
	return out
}

// checkDefaultAction: what Postfix does when bccguard does not answer.
func checkDefaultAction(e *env) []Result {
	return e.perValue("milter_default_action", "default_action", "milter_default_action", func(v, where, paths string) Result {
		msg := fmt.Sprintf("%s is %s (%s).", where, v, paths)
		switch v {
		case "tempfail":
			return Result{Message: msg + " Mail waits while bccguard is down."}
		case "accept":
			return Result{Status: Fail, Message: msg + " A bccguard outage delivers mail unconverted.",
				Fix: "set " + where + " to tempfail."}
		}
		return Result{Status: Warn, Message: msg + " A bccguard outage " + map[string]string{
			"reject":     "bounces mail permanently.",
			"quarantine": "puts mail on hold, and releasing it delivers it unconverted.",
		}[v], Fix: "set " + where + " to tempfail."}
	})
}

// checkProtocol: milter_protocol must be 6 for bccguard's negotiation.
func checkProtocol(e *env) []Result {
	return e.perValue("milter_protocol", "protocol", "milter_protocol", func(v, where, paths string) Result {
		n, err := strconv.Atoi(v)
		if err != nil || n < 6 {
			return Result{Status: Fail, Message: fmt.Sprintf("%s is %s (%s): bccguard needs protocol 6 and every message is refused.", where, v, paths),
				Fix: "set " + where + " to 6 (Postfix's default)."}
		}
		return Result{Message: fmt.Sprintf("%s is %s.", where, v)}
	})
}

// signers are substrings of the addresses of milters that sign or verify
// DKIM (OpenDKIM, dkimpy-milter, OpenDMARC, rspamd) and their usual ports.
var signers = []string{"dkim", "dmarc", "rspamd", ":8891", ":8892", ":8893", ":11332"}

// checkSigningOrder: a DKIM signature made before bccguard rewrites To
// breaks (To is a signed field).
func checkSigningOrder(e *env) []Result {
	var out []Result
	for _, p := range e.paths {
		if p.bccguard <= 0 {
			continue
		}
		for _, m := range p.entries[:p.bccguard] {
			addr := strings.ToLower(m.Addr)
			if slices.ContainsFunc(signers, func(s string) bool { return strings.Contains(addr, s) }) {
				out = append(out, Result{Status: Warn, Check: "milter order",
					Message: fmt.Sprintf("%s: %s lists %s before bccguard: if it signs DKIM, the signature does not cover the rewritten To and receivers see it broken.", p.what, p.where(p.param), m.Addr),
					Fix:     "list bccguard first in " + p.where(p.param) + "."})
			}
		}
	}
	if len(out) == 0 {
		out = append(out, Result{Check: "milter order", Message: "no DKIM or DMARC milter listed before bccguard."})
	}
	return out
}

// splitFollowers are substrings of the addresses of milters that may come
// after bccguard when it splits: DKIM signers (OpenDKIM, dkimpy-milter and
// their usual port), which sign and never refuse.
var splitFollowers = []string{"dkim", ":8891"}

// checkSplitOrder: with delivery: split, only DKIM signers may follow
// bccguard. The copies are handed over at end-of-message, before the
// milters after bccguard answer: one that refuses a recipient (at RCPT,
// after bccguard stored it) or the message (a virus or spam scanner's
// 5xx) leaves copies out that Postfix refused, and the reinjection
// service runs no scanner on them.
func checkSplitOrder(e *env) []Result {
	if e.cfg.Policy == nil || !e.cfg.Policy.UsesSplit() {
		return nil
	}
	var out []Result
	for _, p := range e.paths {
		if p.bccguard < 0 || p.noMilters {
			continue
		}
		for _, m := range p.entries[p.bccguard+1:] {
			addr := strings.ToLower(m.Addr)
			if !slices.ContainsFunc(splitFollowers, func(s string) bool { return strings.Contains(addr, s) }) {
				out = append(out, Result{Status: Fail, Check: "split order",
					Message: fmt.Sprintf("%s: %s lists %s after bccguard, and delivery: split is on: the copies go out before it answers, so a recipient or message it refuses still gets copies, unscanned.", p.what, p.where(p.param), m.Addr),
					Fix:     "list " + m.Addr + " before bccguard in " + p.where(p.param) + " (only DKIM signers may follow bccguard), then postfix reload."})
			}
		}
	}
	if len(out) == 0 {
		out = append(out, Result{Check: "split order", Message: "delivery: split: no milter but a DKIM signer follows bccguard."})
	}
	return out
}
