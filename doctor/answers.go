package doctor

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"

	gomilter "github.com/d--j/go-milter"
)

// checkMilterAnswers connects to bccguard as Postfix does, negotiates with
// Postfix's milter_protocol, and reports what bccguard asks for; for a
// unix socket, also whether Postfix's mail_owner may open it.
func checkMilterAnswers(e *env) []Result {
	var out []Result
	if e.listen.network == "unix" {
		out = append(out, e.checkSocketAccess())
	}
	version := e.milterProtocol()
	s, err := e.negotiate(e.listen)
	if err != nil && strings.Contains(err.Error(), "negotiate") {
		return append(out, Result{Status: Fail, Check: "milter",
			Message: fmt.Sprintf("bccguard on %s refuses Postfix's milter protocol %d: %v. Postfix applies milter_default_action to every message.", e.cfg.Listen, version, err),
			Fix:     "set milter_protocol = 6 in main.cf."})
	}
	if err != nil {
		return append(out, Result{Status: Fail, Check: "milter",
			Message: fmt.Sprintf("bccguard does not answer on %s: %v. Postfix applies milter_default_action to every message.", e.cfg.Listen, err),
			Fix:     "start bccguard (systemctl start bccguard; journalctl -u bccguard says why it stopped), or make listen in " + e.cfg.Name() + " match what Postfix uses."})
	}
	defer s.Close()
	return append(out, Result{Check: "milter",
		Message: fmt.Sprintf("bccguard answers on %s: milter protocol %d; it asks for %s; it may %s.", e.cfg.Listen, version, events(s), actions(s))})
}

// milterProtocol is the milter protocol version Postfix offers.
func (e *env) milterProtocol() uint32 {
	if n, err := strconv.Atoi(e.postfix.Main["milter_protocol"]); err == nil && n >= 2 && n < 6 {
		return uint32(n)
	}
	return 6
}

// negotiate connects to the milter at ep as Postfix does and negotiates
// with Postfix's milter_protocol; the caller closes the session.
func (e *env) negotiate(ep endpoint) (*gomilter.ClientSession, error) {
	network, address := "tcp", net.JoinHostPort(ep.host, ep.port)
	if ep.network == "unix" {
		network, address = "unix", ep.file
	} else if ep.host == "" || isUnspecified(ep.host) {
		address = net.JoinHostPort("127.0.0.1", ep.port)
	}
	c := gomilter.NewClient(network, address,
		// Offer what Postfix offers at its milter_protocol: zero makes
		// go-milter choose every option that version knows.
		gomilter.WithMaximumVersion(e.milterProtocol()), gomilter.WithProtocols(0),
		gomilter.WithDialer(&net.Dialer{Timeout: e.opts.Timeout}),
		gomilter.WithReadTimeout(e.opts.Timeout), gomilter.WithWriteTimeout(e.opts.Timeout))
	return c.Session(nil)
}

// events lists the events the milter did not negotiate away.
func events(s *gomilter.ClientSession) string {
	var out []string
	for _, ev := range []struct {
		opt  gomilter.OptProtocol
		name string
	}{
		{gomilter.OptNoConnect, "connect"}, {gomilter.OptNoHelo, "HELO"}, {gomilter.OptNoMailFrom, "MAIL FROM"},
		{gomilter.OptNoRcptTo, "RCPT TO"}, {gomilter.OptNoData, "DATA"}, {gomilter.OptNoHeaders, "header fields"},
		{gomilter.OptNoEOH, "end of header"}, {gomilter.OptNoBody, "the body"},
	} {
		if !s.ProtocolOption(ev.opt) {
			out = append(out, ev.name)
		}
	}
	return joinAnd(append(out, "end of message"))
}

// actions lists the modifications the milter may make.
func actions(s *gomilter.ClientSession) string {
	var out []string
	for _, a := range []struct {
		opt  gomilter.OptAction
		name string
	}{
		{gomilter.OptAddHeader, "add header fields"}, {gomilter.OptChangeHeader, "change header fields"},
		{gomilter.OptChangeBody, "change the body"}, {gomilter.OptAddRcpt, "add recipients"},
		{gomilter.OptRemoveRcpt, "remove recipients"}, {gomilter.OptChangeFrom, "change the sender"},
		{gomilter.OptQuarantine, "quarantine"},
	} {
		if s.ActionOption(a.opt) {
			out = append(out, a.name)
		}
	}
	if len(out) == 0 {
		return "change nothing"
	}
	return joinAnd(out)
}

// checkSocketAccess: Postfix's daemons run as mail_owner and need write
// permission on the socket and search permission on every directory above.
func (e *env) checkSocketAccess() Result {
	r := Result{Check: "socket"}
	owner := e.postfix.Main["mail_owner"]
	u, err := user.Lookup(owner)
	if err != nil {
		r.Status, r.Message = Fail, fmt.Sprintf("mail_owner %s: %v.", owner, err)
		return r
	}
	uid, _ := strconv.Atoi(u.Uid)
	gids, _ := u.GroupIds()
	st, err := os.Stat(e.listen.file)
	if err != nil {
		r.Status, r.Message = Fail, fmt.Sprintf("%s: %v.", e.listen.file, err)
		r.Fix = "start bccguard, which creates the socket."
		return r
	}
	sys := st.Sys().(*syscall.Stat_t)
	desc := fmt.Sprintf("%s: owner %s, group %s, mode %04o", e.listen.file, userName(sys.Uid), groupName(sys.Gid), st.Mode().Perm())
	if st.Mode()&os.ModeSocket == 0 {
		r.Status, r.Message = Fail, desc+": not a socket."
		return r
	}
	if !allowed(st, uid, gids, 2) {
		r.Status = Fail
		r.Message = fmt.Sprintf("%s: Postfix's mail_owner %s cannot write to it, so every connection fails.", desc, owner)
		r.Fix = "set socket_group: " + owner + " and socket_mode: \"0660\" in " + e.cfg.Name() + " and restart bccguard."
		return r
	}
	for dir := path.Dir(e.listen.file); ; dir = path.Dir(dir) {
		dst, err := os.Stat(dir)
		if err != nil || !allowed(dst, uid, gids, 1) {
			r.Status = Fail
			r.Message = fmt.Sprintf("%s: Postfix's mail_owner %s cannot reach it: directory %s is not searchable for it.", desc, owner, dir)
			r.Fix = "chmod o+x " + dir + " (or give mail_owner's group search permission)."
			return r
		}
		if dir == "/" {
			break
		}
	}
	r.Message = fmt.Sprintf("%s: Postfix's mail_owner %s may connect.", desc, owner)
	return r
}

// allowed reports whether uid with groups gids has the permission bit
// want (2 write, 1 search) on the file, as the kernel decides.
func allowed(st os.FileInfo, uid int, gids []string, want os.FileMode) bool {
	if uid == 0 {
		return true
	}
	sys := st.Sys().(*syscall.Stat_t)
	mode := st.Mode().Perm()
	switch {
	case int(sys.Uid) == uid:
		return mode>>6&want != 0
	case slices.Contains(gids, strconv.Itoa(int(sys.Gid))):
		return mode>>3&want != 0
	}
	return mode&want != 0
}

func userName(uid uint32) string {
	if u, err := user.LookupId(strconv.Itoa(int(uid))); err == nil {
		return u.Username
	}
	return strconv.Itoa(int(uid))
}

func groupName(gid uint32) string {
	if g, err := user.LookupGroupId(strconv.Itoa(int(gid))); err == nil {
		return g.Name
	}
	return strconv.Itoa(int(gid))
}
