package doctor

import (
	"fmt"
	"slices"
	"strings"

	"github.com/bccguard/bccguard/config"
)

// reinjectService returns the master.cf smtpd service at reinject.address
// (delivery: split hands copies back there), or nil.
func (e *env) reinjectService() *Service {
	network, addr, err := config.ParseListen(e.cfg.Reinject.Address)
	if err != nil || network != "tcp" {
		return nil
	}
	for _, s := range e.postfix.Services {
		if s.Command == "smtpd" && s.Type == "inet" && s.Name == addr {
			return s
		}
	}
	return nil
}

// checkReinject: the reinjection service of delivery: split exists, does
// not run bccguard (a copy whose To keeps a visible internal address would
// be split again, and again), and keeps address mappings (the copies have
// not been through virtual alias expansion yet).
func checkReinject(e *env) []Result {
	if e.cfg.Reinject.Address == "" {
		return nil
	}
	r := Result{Check: "reinject"}
	network, addr, _ := config.ParseListen(e.cfg.Reinject.Address)
	if network != "tcp" {
		r.Status = Warn
		r.Message = fmt.Sprintf("reinject.address %s is a unix socket: not checked.", e.cfg.Reinject.Address)
		r.Fix = "check by hand that the smtpd behind it runs no bccguard and has no no_address_mappings."
		return []Result{r}
	}
	svc := e.reinjectService()
	if svc == nil {
		r.Status = Warn
		r.Message = fmt.Sprintf("reinject.address %s: no smtpd service %s/inet in master.cf; every split falls back to hiding, and notices to senders fail.", e.cfg.Reinject.Address, addr)
		r.Fix = "add the service from deploy/postfix/master.cf (docs/install.md), then postfix reload."
		return []Result{r}
	}
	var p *milterPath
	for _, x := range e.paths {
		if x.svc == svc {
			p = x
		}
	}
	opts := strings.FieldsFunc(e.postfix.Param(svc, "receive_override_options"), func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	switch {
	case p != nil && p.bccguard >= 0 && !p.noMilters:
		r.Status = Fail
		r.Message = fmt.Sprintf("the reinjection service %s runs bccguard (%s): copies would be checked again, and a copy that still shows an internal To would be split again without end.", svc.ID(), p.where(p.param))
		r.Fix = "set -o smtpd_milters= (or only a DKIM signer) on " + svc.ID() + " in master.cf, then postfix reload."
	case slices.Contains(opts, "no_address_mappings"):
		r.Status = Fail
		r.Message = fmt.Sprintf("the reinjection service %s has receive_override_options=no_address_mappings: copies have not been through virtual alias expansion, and a copy to an alias would go nowhere.", svc.ID())
		r.Fix = "remove no_address_mappings from " + svc.ID() + " in master.cf, then postfix reload."
	default:
		r.Message = fmt.Sprintf("the reinjection service %s runs without bccguard and keeps address mappings.", svc.ID())
	}
	return []Result{r}
}
