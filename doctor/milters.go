package doctor

import (
	"net"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/bccguard/bccguard/config"
)

// milterEntry is one element of smtpd_milters or non_smtpd_milters.
type milterEntry struct {
	// Addr is the address as written ("inet:127.0.0.1:10030").
	Addr string
	// Attrs are the per-milter settings of the braced form
	// "{ inet:host:port, default_action=accept }".
	Attrs map[string]string
}

// parseMilters splits a milter list. Postfix separates entries by commas
// or white space; since Postfix 3.0 an entry may be a braced group whose
// first element is the address and the rest name=value settings.
func parseMilters(s string) []milterEntry {
	var out []milterEntry
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimLeft(s, ", \t\r\n") {
		if s[0] == '{' {
			end := strings.IndexByte(s, '}')
			if end < 0 { // unclosed: Postfix reports an error; read on
				end = len(s)
				s += "}"
			}
			e := milterEntry{Attrs: map[string]string{}}
			for i, part := range strings.Split(s[1:end], ",") {
				part = strings.TrimSpace(part)
				if i == 0 {
					e.Addr = part
					continue
				}
				if k, v, ok := strings.Cut(part, "="); ok {
					e.Attrs[strings.TrimSpace(k)] = strings.TrimSpace(v)
				}
			}
			if e.Addr != "" {
				out = append(out, e)
			}
			s = s[end+1:]
			continue
		}
		end := strings.IndexAny(s, ", \t\r\n")
		if end < 0 {
			end = len(s)
		}
		out = append(out, milterEntry{Addr: s[:end]})
		s = s[end:]
	}
	return out
}

// endpoint is where a milter address leads: a TCP host and port, or a
// socket file on disk.
type endpoint struct {
	network string // "tcp" or "unix"
	host    string // tcp
	port    string // tcp
	file    string // unix: the path on disk
}

// listenEndpoint is bccguard's own listen address.
func listenEndpoint(listen string) (endpoint, error) {
	network, addr, err := config.ParseListen(listen)
	if err != nil {
		return endpoint{}, err
	}
	if network == "unix" {
		return endpoint{network: "unix", file: path.Clean(addr)}, nil
	}
	host, port, _ := net.SplitHostPort(addr)
	return endpoint{network: "tcp", host: host, port: port}, nil
}

// postfixEndpoint is where a Postfix daemon that is chrooted or not
// connects for a milter entry; ok is false for an address bccguard cannot
// be behind (a syntax error, another transport).
func (p *Postfix) postfixEndpoint(addr string, chrooted bool) (endpoint, bool) {
	kind, rest, _ := strings.Cut(addr, ":")
	switch kind {
	case "unix", "local":
		return endpoint{network: "unix", file: p.OnDisk(rest, chrooted)}, true
	case "inet", "inet6":
		e, err := listenEndpoint(addr)
		return e, err == nil
	}
	return endpoint{}, false
}

// same reports whether Postfix connecting to e reaches bccguard listening
// on l.
func (e endpoint) same(l endpoint) bool {
	if e.network != l.network {
		return false
	}
	if e.network == "unix" {
		if e.file == l.file {
			return true
		}
		// A symlink or bind mount may lead to the same socket.
		a, err1 := os.Stat(e.file)
		b, err2 := os.Stat(l.file)
		return err1 == nil && err2 == nil && os.SameFile(a, b)
	}
	if e.port != l.port {
		return false
	}
	if strings.EqualFold(e.host, l.host) {
		return true
	}
	if l.host == "" || isUnspecified(l.host) {
		// bccguard listens on every address of this machine: Postfix
		// reaches it through loopback or one of them, not another host
		// that happens to use the same port.
		return slices.ContainsFunc(resolve(e.host), isLocal)
	}
	// "localhost" and 127.0.0.1 are the same to a resolver.
	ea, la := resolve(e.host), resolve(l.host)
	for _, a := range ea {
		for _, b := range la {
			if a.Equal(b) {
				return true
			}
		}
	}
	return false
}

// isLocal reports whether ip is a loopback address or one of this
// machine's own.
func isLocal(ip net.IP) bool {
	if ip.IsLoopback() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

func isUnspecified(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

func resolve(host string) []net.IP {
	if ip := net.ParseIP(host); ip != nil {
		return []net.IP{ip}
	}
	addrs, err := net.LookupIP(host)
	if err != nil {
		return nil
	}
	return addrs
}

// describe renders an entry with its on-disk path when that differs, so
// that an admin sees the chroot translation.
func (e endpoint) describe(addr string) string {
	if e.network == "unix" {
		if _, rest, _ := strings.Cut(addr, ":"); path.Clean(rest) != e.file {
			return addr + " (= " + e.file + " on disk)"
		}
	}
	return addr
}
