package doctor

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"path"
	"strings"
)

// Postfix is the effective configuration of one Postfix instance, as
// postconf(1) reports it: main.cf with every $name expanded, and the
// master.cf services with their -o overrides.
type Postfix struct {
	// Dir is the configuration directory read.
	Dir string
	// Main maps every main.cf parameter (defaults included) to its
	// expanded value.
	Main map[string]string
	// Services are the master.cf entries in file order.
	Services []*Service
}

// Service is one master.cf entry.
type Service struct {
	// Name and Type identify the entry ("smtp", "inet").
	Name, Type string
	// Chroot is the chroot column: "y", "n" or "-".
	Chroot string
	// Command is the daemon program ("smtpd", "cleanup", ...).
	Command string
	// Overrides holds the -o name=value options, expanded.
	Overrides map[string]string
}

// ID is "name/type", as postconf -M spells it.
func (s *Service) ID() string { return s.Name + "/" + s.Type }

// Chrooted reports whether the daemon runs chrooted into the queue
// directory. "-" means the built-in default, which is "n" since Postfix
// 3.0; Debian's master.cf marks smtpd, cleanup and pickup "y" explicitly.
func (s *Service) Chrooted() bool { return s.Chroot == "y" }

// Loopback reports whether an inet service listens only on a loopback
// address ("127.0.0.1:10025", "[::1]:10025"), as the return path of a
// content filter does.
func (s *Service) Loopback() bool {
	if s.Type != "inet" {
		return false
	}
	host, _, err := net.SplitHostPort(s.Name)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ContentFilter returns where a content_filter is set: main.cf or the -o
// of a master.cf service; "" when none is.
func (p *Postfix) ContentFilter() string {
	if p.Main["content_filter"] != "" {
		return "content_filter in main.cf"
	}
	for _, s := range p.Services {
		if s.Overrides["content_filter"] != "" {
			return "-o content_filter of " + s.ID() + " in master.cf"
		}
	}
	return ""
}

// Param returns a parameter as the service sees it: its -o override, or
// the main.cf value. svc may be nil.
func (p *Postfix) Param(svc *Service, name string) string {
	if svc != nil {
		if v, ok := svc.Overrides[name]; ok {
			return v
		}
	}
	return p.Main[name]
}

// Service returns the master.cf entry name/type, or nil.
func (p *Postfix) Service(name, typ string) *Service {
	for _, s := range p.Services {
		if s.Name == name && s.Type == typ {
			return s
		}
	}
	return nil
}

// OnDisk translates a unix socket path from main.cf to the file a daemon
// reaches: a chrooted daemon (Debian's smtpd and cleanup) sees the queue
// directory as "/", and a relative path is relative to the queue directory
// (where every Postfix daemon runs).
func (p *Postfix) OnDisk(sock string, chrooted bool) string {
	if chrooted || !strings.HasPrefix(sock, "/") {
		return path.Join(p.Main["queue_directory"], sock)
	}
	return path.Clean(sock)
}

// ReadPostfix runs postconf (the command, usually "postconf") against the
// configuration directory dir ("" for Postfix's default one).
func ReadPostfix(ctx context.Context, postconf, dir string) (*Postfix, error) {
	pc := func(args ...string) (string, error) {
		if dir != "" {
			args = append([]string{"-c", dir}, args...)
		}
		cmd := exec.CommandContext(ctx, postconf, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("postconf %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return string(out), nil
	}
	p := &Postfix{Main: map[string]string{}}
	out, err := pc("-x")
	if err != nil {
		return nil, err
	}
	eachSetting(out, func(name, value string) { p.Main[name] = value })
	p.Dir = p.Main["config_directory"]

	// -F: the master.cf fields one per line (service/type/field = value),
	// easier to read than -M's columns; -xP: the -o overrides, expanded.
	if out, err = pc("-F"); err != nil {
		return nil, err
	}
	eachSetting(out, func(key, value string) {
		name, typ, field, ok := splitServiceKey(key)
		if !ok {
			return
		}
		s := p.Service(name, typ)
		if s == nil {
			s = &Service{Name: name, Type: typ, Overrides: map[string]string{}}
			p.Services = append(p.Services, s)
		}
		switch field {
		case "chroot":
			s.Chroot = value
		case "command":
			s.Command, _, _ = strings.Cut(value, " ")
		}
	})
	if out, err = pc("-xP"); err != nil {
		return nil, err
	}
	eachSetting(out, func(key, value string) {
		name, typ, param, ok := splitServiceKey(key)
		if s := p.Service(name, typ); ok && s != nil {
			s.Overrides[param] = value
		}
	})
	return p, nil
}

// eachSetting calls f for every "name = value" line.
func eachSetting(out string, f func(name, value string)) {
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), "=")
		if ok {
			f(strings.TrimSpace(name), strings.TrimSpace(value))
		}
	}
}

// splitServiceKey splits "name/type/field". A service name may itself
// contain a slash only in the unusual form of a unix socket path; the type
// and field never do, so the key is split from the right.
func splitServiceKey(key string) (name, typ, field string, ok bool) {
	i := strings.LastIndexByte(key, '/')
	if i < 0 {
		return "", "", "", false
	}
	j := strings.LastIndexByte(key[:i], '/')
	if j < 0 {
		return "", "", "", false
	}
	return key[:j], key[j+1 : i], key[i+1:], true
}
