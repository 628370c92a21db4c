package doctor

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
)

// checkMilterMaps: smtpd_milter_maps (Postfix 3.2) replaces smtpd_milters
// per client address, and DISABLE turns milters off. Postfix's own example
// is "192.168.0.0/16 DISABLE": the staff's own clients, exactly the mail
// bccguard is for. Whenever it is set, doctor looks up an address of each
// mynetworks entry the way smtpd does (postmap -q).
func checkMilterMaps(e *env) []Result {
	type key struct {
		value, where string
		chrooted     bool
	}
	var order []key
	paths := map[key][]string{}
	first := map[key]*milterPath{}
	for _, p := range e.paths {
		if p.param != "smtpd_milters" || p.noMilters {
			continue
		}
		v := e.postfix.Param(p.svc, "smtpd_milter_maps")
		if v == "" {
			continue
		}
		k := key{v, p.where("smtpd_milter_maps"), p.chrooted}
		if _, ok := paths[k]; !ok {
			order = append(order, k)
			first[k] = p
		}
		paths[k] = append(paths[k], p.what)
	}
	if len(order) == 0 {
		return []Result{{Check: "smtpd_milter_maps", Message: "not set: smtpd_milters applies to every client."}}
	}
	var out []Result
	for _, k := range order {
		r := Result{Check: "smtpd_milter_maps", Status: Warn}
		var holes, found []string
		for _, addr := range networkSamples(e.postfix.Main["mynetworks"]) {
			v, ok, err := e.lookupMaps(k.value, addr)
			switch {
			case err != nil:
				holes = append(holes, fmt.Sprintf("%s: lookup failed (%v)", addr, err))
			case !ok:
				continue
			case strings.EqualFold(v, "DISABLE"):
				holes = append(holes, addr+": DISABLE")
			case !e.hasBccguard(v, k.chrooted):
				holes = append(holes, fmt.Sprintf("%s: %q without bccguard", addr, v))
			default:
				found = append(found, addr+": a list with bccguard")
			}
		}
		what := fmt.Sprintf("%s = %s (%s)", k.where, k.value, joinAnd(paths[k]))
		if len(holes) > 0 {
			r.Status = Fail
			r.Message = fmt.Sprintf("%s replaces smtpd_milters for clients in mynetworks: %s: their mail is never checked.", what, strings.Join(holes, "; "))
			r.Fix = "add " + e.postfixAddress(first[k]) + " to those entries of the map (or remove them, so that smtpd_milters applies), then postfix reload."
		} else {
			r.Message = fmt.Sprintf("%s replaces smtpd_milters for the clients it matches (mynetworks: %s).", what, orNone(found))
			r.Fix = "check that every entry of the map that returns DISABLE or a milter list is meant to skip bccguard."
		}
		out = append(out, r)
	}
	return out
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "no entry matches"
	}
	return strings.Join(s, "; ")
}

// hasBccguard reports whether a milter list from a map names bccguard.
func (e *env) hasBccguard(list string, chrooted bool) bool {
	for _, m := range parseMilters(list) {
		if ep, ok := e.postfix.postfixEndpoint(m.Addr, chrooted); ok && ep.same(e.listen) {
			return true
		}
	}
	return false
}

// networkSamples returns one client address for each IP network of
// mynetworks: its first host ("192.168.0.0/16" gives 192.168.0.1), the
// address itself for a host. Host names and tables are left out.
func networkSamples(mynetworks string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(mynetworks, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		f = strings.NewReplacer("[", "", "]", "").Replace(f)
		if !strings.Contains(f, "/") {
			if ip := net.ParseIP(f); ip != nil {
				out = append(out, ip.String())
			}
			continue
		}
		ip, n, err := net.ParseCIDR(f)
		if err != nil {
			continue // a table (hash:/etc/...) or a file
		}
		ones, bits := n.Mask.Size()
		if ones == bits {
			out = append(out, ip.String())
			continue
		}
		first := append(net.IP(nil), n.IP...)
		first[len(first)-1]++
		out = append(out, first.String())
	}
	return out
}

// lookupMaps looks addr up in the tables of a map list, in order, as
// Postfix does: the first table that has it answers.
func (e *env) lookupMaps(tables, addr string) (string, bool, error) {
	postmap := "postmap"
	if strings.Contains(e.opts.Postconf, "/") {
		postmap = filepath.Join(filepath.Dir(e.opts.Postconf), "postmap")
	}
	for _, table := range strings.FieldsFunc(tables, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		cmd := exec.CommandContext(e.ctx, postmap, "-c", e.postfix.Dir, "-q", addr, table)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == 1 && stderr.Len() == 0 {
			continue // not found in this table
		}
		if err != nil {
			return "", false, fmt.Errorf("postmap -q %s %s: %w: %s", addr, table, err, strings.TrimSpace(stderr.String()))
		}
		return strings.TrimSpace(string(out)), true, nil
	}
	return "", false, nil
}
