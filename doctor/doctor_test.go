package doctor_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bccguard/bccguard/config"
	"github.com/bccguard/bccguard/daemon"
	"github.com/bccguard/bccguard/doctor"
	"github.com/bccguard/bccguard/internal/freeaddr"
	"github.com/bccguard/bccguard/internal/postfixtest"
	"github.com/bccguard/bccguard/milter"
	gomilter "github.com/d--j/go-milter"
)

// The tests write real Postfix configuration directories (main.cf as the
// e2e instances use, the system's own master.cf with Debian's chroot
// flags) and let doctor read them through the real postconf, against a
// real bccguard milter server on a real listener.

const city = "internal_domains: [city.example.jp, .city.example.jp]\n"

// startMilter serves bccguard's milter on ln until the test ends.
func startMilter(t *testing.T, ln net.Listener) {
	t.Helper()
	c, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	var p atomic.Pointer[config.Config]
	p.Store(c)
	s := milter.NewServer(&p, nil, nil)
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
}

// inetMilter starts a milter on 127.0.0.1 and returns its address in
// Postfix syntax.
func inetMilter(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	startMilter(t, ln)
	return "inet:" + ln.Addr().String()
}

// closedAddr is an address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "inet:" + ln.Addr().String()
}

// run writes bccguard's config (yaml plus listen) and runs doctor on dir.
func run(t *testing.T, dir, listen, yaml string) doctor.Report {
	t.Helper()
	f := filepath.Join(t.TempDir(), "bccguard.yaml")
	if err := os.WriteFile(f, []byte("listen: "+listen+"\n"+yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	r, err := doctor.Run(context.Background(), doctor.Options{Config: c, PostfixDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	r.Write(&out)
	t.Logf("doctor:\n%s", out.String())
	return r
}

// right is a configuration directory wired as the docs say.
func right(t *testing.T, milterAddr string, extra map[string]string) *postfixtest.ConfigDir {
	t.Helper()
	params := map[string]string{"myorigin": "city.example.jp", "myhostname": "mx.city.example.jp"}
	for k, v := range extra {
		params[k] = v
	}
	return postfixtest.WriteConfig(t, postfixtest.Options{Milter: milterAddr, Extra: params})
}

// want checks the worst verdict of one check, and a piece of its text.
func want(t *testing.T, r doctor.Report, check string, status doctor.Status, text string) {
	t.Helper()
	got := r.Find(check)
	if len(got) == 0 {
		t.Fatalf("no %s check in the report", check)
	}
	var msgs strings.Builder
	for _, x := range got {
		msgs.WriteString(x.Message + " " + x.Fix + "\n")
	}
	if got.Worst() != status || !strings.Contains(msgs.String(), text) {
		t.Errorf("%s: %v, %q; want %v and %q", check, got.Worst(), msgs.String(), status, text)
	}
}

func TestRightWiringPasses(t *testing.T) {
	addr := inetMilter(t)
	r := run(t, right(t, addr, nil).Dir(), addr, city)
	if r.Failed() || r.Worst() != doctor.OK {
		t.Fatalf("verdict %v on a right configuration", r.Worst())
	}
	want(t, r, "smtpd_milters", doctor.OK, "smtpd smtp/inet")
	want(t, r, "non_smtpd_milters", doctor.OK, "local submission")
	want(t, r, "milter", doctor.OK, "milter protocol 6; it asks for MAIL FROM, header fields and end of message; it may add header fields and change header fields")
}

func TestMissingFromNonSMTPDMilters(t *testing.T) {
	addr := inetMilter(t)
	cd := right(t, addr, map[string]string{"non_smtpd_milters": ""})
	r := run(t, cd.Dir(), addr, city)
	want(t, r, "non_smtpd_milters", doctor.Fail, "add "+addr+" to non_smtpd_milters in main.cf")
	want(t, r, "smtpd_milters", doctor.OK, "")
	if !r.Failed() {
		t.Fatal("not failed")
	}
}

func TestMissingFromSMTPDMilters(t *testing.T) {
	addr := inetMilter(t)
	// Another milter only: bccguard is not on the list.
	cd := right(t, addr, map[string]string{"smtpd_milters": "inet:127.0.0.1:8891", "non_smtpd_milters": addr})
	r := run(t, cd.Dir(), addr, city)
	want(t, r, "smtpd_milters", doctor.Fail, "(inet:127.0.0.1:8891)")
}

// A submission service that overrides smtpd_milters counts: empty is a
// hole, bccguard in it is fine.
func TestSubmissionOverride(t *testing.T) {
	addr := inetMilter(t)
	cd := right(t, addr, nil)
	cd.Postconf(t, "-Me", "submission/inet=submission inet n - y - - smtpd -o syslog_name=postfix/submission -o smtpd_milters=")
	r := run(t, cd.Dir(), addr, city)
	want(t, r, "smtpd_milters", doctor.Fail, "-o smtpd_milters of submission/inet in master.cf")

	cd.Postconf(t, "-Me", "submission/inet=submission inet n - y - - smtpd -o smtpd_milters=inet:127.0.0.1:8891,"+addr)
	r = run(t, cd.Dir(), addr, city)
	want(t, r, "smtpd_milters", doctor.OK, "smtpd submission/inet, chrooted: -o smtpd_milters of submission/inet in master.cf has "+addr)
	want(t, r, "milter order", doctor.Warn, "inet:127.0.0.1:8891 before bccguard")
	if r.Failed() {
		t.Fatal("failed with bccguard on every path")
	}
}

// A loopback smtpd without milters is a content filter's return path
// when a content_filter is set: a warning, not a failure. Without any
// content_filter it is something else (a webmail's submission port) whose
// mail passes unchecked.
func TestContentFilterReturnPathWarns(t *testing.T) {
	addr := inetMilter(t)
	cd := right(t, addr, nil)
	cd.Postconf(t, "-Me", "127.0.0.1:10025/inet=127.0.0.1:10025 inet n - n - - smtpd -o receive_override_options=no_unknown_recipient_checks,no_milters")
	r := run(t, cd.Dir(), addr, city)
	want(t, r, "smtpd_milters", doctor.Fail, "no_milters")

	cd.Postconf(t, "-e", "content_filter=smtp-amavis:[127.0.0.1]:10024")
	r = run(t, cd.Dir(), addr, city)
	want(t, r, "smtpd_milters", doctor.Warn, "return path of the content filter (content_filter in main.cf)")
	if r.Failed() {
		t.Fatal("failed")
	}

	// IPv6 loopback, and the filter set by -o on the smtp service.
	cd.Postconf(t, "-e", "content_filter=")
	cd.Postconf(t, "-MX", "127.0.0.1:10025/inet")
	cd.Postconf(t, "-Me", "[::1]:10025/inet=[::1]:10025 inet n - n - - smtpd -o smtpd_milters=")
	r = run(t, cd.Dir(), addr, city)
	want(t, r, "smtpd_milters", doctor.Fail, "smtpd [::1]:10025/inet")
	cd.Postconf(t, "-Me", "smtp/inet=smtp inet n - y - - smtpd -o content_filter=smtp-amavis:[::1]:10024")
	r = run(t, cd.Dir(), addr, city)
	want(t, r, "smtpd_milters", doctor.Warn, "(-o content_filter of smtp/inet in master.cf)")
	if r.Failed() {
		t.Fatal("failed")
	}

	cd.Postconf(t, "-Me", "smtp/inet=smtp inet n - y - - smtpd -o receive_override_options=no_milters")
	r = run(t, cd.Dir(), addr, city)
	want(t, r, "smtpd_milters", doctor.Fail, "no_milters")
}

func TestDefaultActionAccept(t *testing.T) {
	addr := inetMilter(t)
	r := run(t, right(t, addr, map[string]string{"milter_default_action": "accept"}).Dir(), addr, city)
	want(t, r, "milter_default_action", doctor.Fail, "set milter_default_action in main.cf to tempfail")
	// The braced per-milter form overrides main.cf.
	braced := "{ " + addr + ", default_action=accept }"
	r = run(t, right(t, addr, map[string]string{"smtpd_milters": braced, "non_smtpd_milters": addr}).Dir(), addr, city)
	want(t, r, "milter_default_action", doctor.Fail, "default_action in the braced entry of smtpd_milters in main.cf is accept")
	r = run(t, right(t, addr, map[string]string{"milter_default_action": "quarantine"}).Dir(), addr, city)
	want(t, r, "milter_default_action", doctor.Warn, "releasing it delivers it unconverted")
	if r.Failed() {
		t.Fatal("quarantine failed")
	}
}

func TestOldMilterProtocol(t *testing.T) {
	addr := inetMilter(t)
	r := run(t, right(t, addr, map[string]string{"milter_protocol": "2"}).Dir(), addr, city)
	want(t, r, "milter_protocol", doctor.Fail, "needs protocol 6")
	want(t, r, "milter", doctor.Fail, "refuses Postfix's milter protocol 2")
}

// The walkthrough's machine: myorigin = $myhostname = vm.
func TestUnqualifiedOrigin(t *testing.T) {
	addr := inetMilter(t)
	cd := right(t, addr, map[string]string{"myorigin": "$myhostname", "myhostname": "vm"})
	r := run(t, cd.Dir(), addr, city)
	want(t, r, "myorigin", doctor.Fail, "myorigin = vm: sender domain vm is not in internal_domains")
	if len(r.Find("myhostname")) != 0 {
		t.Error("myhostname judged again although it is myorigin")
	}
	// With a domains list, an entry for vm covers it.
	r = run(t, cd.Dir(), addr, city+"domains:\n  - domain: city.example.jp\n  - domain: vm\n")
	want(t, r, "myorigin", doctor.OK, "covered (rule domains[1] vm)")

	cd = right(t, addr, map[string]string{"myhostname": "mx1.elsewhere.example"})
	r = run(t, cd.Dir(), addr, city)
	want(t, r, "myorigin", doctor.OK, "covered (rule internal_domains)")
	want(t, r, "myhostname", doctor.Warn, "mx1.elsewhere.example")
}

func TestMilterNotAnswering(t *testing.T) {
	addr := closedAddr(t)
	r := run(t, right(t, addr, nil).Dir(), addr, city)
	want(t, r, "milter", doctor.Fail, "does not answer on "+addr)
	want(t, r, "smtpd_milters", doctor.OK, "")
}

func TestListenMismatch(t *testing.T) {
	addr := inetMilter(t)
	other := closedAddr(t)
	r := run(t, right(t, other, nil).Dir(), addr, city)
	want(t, r, "smtpd_milters", doctor.Fail, "is not in smtpd_milters in main.cf ("+other+")")
}

// unixMilter serves bccguard on a socket below the configuration's queue
// directory, owned by root with mode and group as given.
func unixMilter(t *testing.T, cd *postfixtest.ConfigDir, mode os.FileMode, group string) string {
	t.Helper()
	dir := filepath.Join(cd.QueueDir(), "bccguard")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "bccguard.sock")
	ln, err := milter.Listen("unix", sock, mode)
	if err != nil {
		t.Fatal(err)
	}
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			t.Fatal(err)
		}
		gid, _ := strconv.Atoi(g.Gid)
		if err := os.Chown(sock, 0, gid); err != nil {
			t.Fatal(err)
		}
	}
	startMilter(t, ln)
	return sock
}

// Debian's chroot: main.cf names the socket relative to the queue
// directory, which chrooted smtpd and cleanup see as "/".
func TestUnixSocketChroot(t *testing.T) {
	cd := postfixtest.WriteConfig(t, postfixtest.Options{Extra: map[string]string{"myorigin": "city.example.jp"}})
	sock := unixMilter(t, cd, 0o660, "postfix")
	cd.Postconf(t, "-e", "smtpd_milters=unix:/bccguard/bccguard.sock", "non_smtpd_milters=$smtpd_milters")
	r := run(t, cd.Dir(), "unix:"+sock, city)
	want(t, r, "smtpd_milters", doctor.OK, "unix:/bccguard/bccguard.sock (= "+sock+" on disk)")
	want(t, r, "non_smtpd_milters", doctor.OK, "(= "+sock+" on disk)")
	want(t, r, "socket", doctor.OK, "owner root, group postfix, mode 0660: Postfix's mail_owner postfix may connect")
	want(t, r, "milter", doctor.OK, "answers on unix:"+sock)
	if r.Failed() {
		t.Fatal("failed")
	}

	// The full path is wrong for a chrooted daemon...
	cd.Postconf(t, "-e", "smtpd_milters=unix:"+sock)
	r = run(t, cd.Dir(), "unix:"+sock, city)
	want(t, r, "smtpd_milters", doctor.Fail, "add unix:/bccguard/bccguard.sock to smtpd_milters")
	// ...and right once smtpd runs unchrooted, while cleanup still is.
	cd.Postconf(t, "-F", "smtp/inet/chroot=n")
	r = run(t, cd.Dir(), "unix:"+sock, city)
	want(t, r, "smtpd_milters", doctor.OK, "smtpd smtp/inet: smtpd_milters in main.cf has unix:"+sock)
	want(t, r, "non_smtpd_milters", doctor.Fail, "add unix:/bccguard/bccguard.sock to non_smtpd_milters")
}

func TestUnixSocketPostfixCannotOpen(t *testing.T) {
	cd := postfixtest.WriteConfig(t, postfixtest.Options{Milter: "unix:/bccguard/bccguard.sock", Extra: map[string]string{"myorigin": "city.example.jp"}})
	sock := unixMilter(t, cd, 0o600, "")
	r := run(t, cd.Dir(), "unix:"+sock, city)
	want(t, r, "socket", doctor.Fail, "mode 0600: Postfix's mail_owner postfix cannot write to it")
	// The milter itself answers (doctor runs as root).
	want(t, r, "milter", doctor.OK, "")

	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(sock), 0o700); err != nil {
		t.Fatal(err)
	}
	r = run(t, cd.Dir(), "unix:"+sock, city)
	want(t, r, "socket", doctor.Fail, "directory "+filepath.Dir(sock)+" is not searchable")
}

// TestRunningVersion: doctor reads the running daemon's version from its
// metrics and warns when it is not the installed one (an upgrade without a
// restart).
func TestRunningVersion(t *testing.T) {
	metricsAddr := freeaddr.Loopback(t)
	addr := "inet:" + freeaddr.Loopback(t)
	f := filepath.Join(t.TempDir(), "bccguard.yaml")
	yaml := "listen: " + addr + "\nmetrics_listen: " + metricsAddr + "\n" + city
	if err := os.WriteFile(f, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.Start(c, daemon.Options{File: f, Version: "bccguard 1.0.0 go1.26 linux/amd64"}, slog.New(slog.DiscardHandler), new(slog.LevelVar))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Shutdown(context.Background()) })
	dir := right(t, addr, nil).Dir()
	report := func(version string) doctor.Report {
		r, err := doctor.Run(context.Background(), doctor.Options{Config: c, PostfixDir: dir, Version: version})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	want(t, report("bccguard 1.0.0 go1.26 linux/amd64"), "version", doctor.OK, "bccguard 1.0.0 go1.26 linux/amd64 runs.")
	r := report("bccguard 1.1.0 go1.26 linux/amd64")
	want(t, r, "version", doctor.Warn, "bccguard 1.0.0 go1.26 linux/amd64 runs, but this is bccguard 1.1.0")
	if r.Failed() {
		t.Fatal("a version mismatch failed")
	}
	d.Shutdown(context.Background())
	want(t, report("bccguard 1.0.0 go1.26 linux/amd64"), "version", doctor.Warn, "cannot read the running daemon's version")
}

// Debian's main.cf has myorigin = /etc/mailname: Postfix reads the domain
// from the file's first line, and the fix is to edit the file.
func TestOriginFromMailname(t *testing.T) {
	addr := inetMilter(t)
	mailname := filepath.Join(t.TempDir(), "mailname")
	if err := os.WriteFile(mailname, []byte("city.example.jp\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cd := right(t, addr, map[string]string{"myorigin": mailname})
	r := run(t, cd.Dir(), addr, city)
	want(t, r, "myorigin", doctor.OK, "myorigin = city.example.jp (from "+mailname+") is covered")

	if err := os.WriteFile(mailname, []byte("vm\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = run(t, cd.Dir(), addr, city)
	want(t, r, "myorigin", doctor.Fail, "put the organization's mail domain in "+mailname)
	want(t, r, "myorigin", doctor.Fail, "myorigin = vm (from "+mailname+")")

	if err := os.Remove(mailname); err != nil {
		t.Fatal(err)
	}
	r = run(t, cd.Dir(), addr, city)
	want(t, r, "myorigin", doctor.Fail, "no such file")
}

// bccguard listening on 0.0.0.0 is reached through this machine's own
// addresses, not through another host with a milter on the same port.
func TestUnspecifiedListenIsNotAnyHost(t *testing.T) {
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	startMilter(t, ln)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	listen := "inet:0.0.0.0:" + port
	r := run(t, right(t, "inet:127.0.0.1:"+port, nil).Dir(), listen, city)
	want(t, r, "smtpd_milters", doctor.OK, "has inet:127.0.0.1:"+port)
	want(t, r, "milter", doctor.OK, "answers")
	other := "inet:198.51.100.7:" + port
	r = run(t, right(t, other, nil).Dir(), listen, city)
	want(t, r, "smtpd_milters", doctor.Fail, "is not in smtpd_milters in main.cf ("+other+")")
	want(t, r, "smtpd_milters", doctor.Fail, "add inet:127.0.0.1:"+port+" to smtpd_milters")
}

// smtpd_milter_maps replaces smtpd_milters per client: Postfix's own
// example DISABLEs milters for the staff's network. doctor looks up an
// address of each mynetworks entry with the real postmap.
func TestSMTPDMilterMaps(t *testing.T) {
	addr := inetMilter(t)
	cd := right(t, addr, map[string]string{"mynetworks": "127.0.0.0/8 [::1]/128 192.168.0.0/16"})
	table := filepath.Join(t.TempDir(), "milter_map.cidr")
	writeTable := func(s string) {
		t.Helper()
		if err := os.WriteFile(table, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := run(t, cd.Dir(), addr, city)
	want(t, r, "smtpd_milter_maps", doctor.OK, "not set")

	writeTable("192.168.0.0/16 DISABLE\n")
	cd.Postconf(t, "-e", "smtpd_milter_maps=cidr:"+table)
	r = run(t, cd.Dir(), addr, city)
	want(t, r, "smtpd_milter_maps", doctor.Fail, "192.168.0.1: DISABLE")
	if !r.Failed() {
		t.Fatal("not failed")
	}

	writeTable("[::1]/128 inet:127.0.0.1:8891\n")
	r = run(t, cd.Dir(), addr, city)
	want(t, r, "smtpd_milter_maps", doctor.Fail, `::1: "inet:127.0.0.1:8891" without bccguard`)

	// A list with bccguard, and DISABLE for a network outside mynetworks:
	// still a warning, since the map decides for the clients it matches.
	writeTable("192.168.0.0/16 inet:127.0.0.1:8891, " + addr + "\n10.0.0.0/8 DISABLE\n")
	r = run(t, cd.Dir(), addr, city)
	want(t, r, "smtpd_milter_maps", doctor.Warn, "192.168.0.1: a list with bccguard")
	if r.Failed() {
		t.Fatal("failed")
	}

	// Set by -o on a submission service only.
	cd.Postconf(t, "-e", "smtpd_milter_maps=")
	writeTable("127.0.0.0/8 DISABLE\n")
	cd.Postconf(t, "-Me", "submission/inet=submission inet n - y - - smtpd -o smtpd_milter_maps=cidr:"+table)
	r = run(t, cd.Dir(), addr, city)
	want(t, r, "smtpd_milter_maps", doctor.Fail, "-o smtpd_milter_maps of submission/inet in master.cf")
}

// The braced per-milter default_action inside a master.cf -o counts: a
// submission service whose bccguard entry says accept fails.
func TestBracedDefaultActionInMasterOverride(t *testing.T) {
	addr := inetMilter(t)
	cd := right(t, addr, nil)
	cd.Postconf(t, "-Me", "submission/inet=submission inet n - y - - smtpd -o { smtpd_milters = { "+addr+", default_action=accept } }")
	r := run(t, cd.Dir(), addr, city)
	want(t, r, "smtpd_milters", doctor.OK, "-o smtpd_milters of submission/inet in master.cf has "+addr)
	want(t, r, "milter_default_action", doctor.Fail, "default_action in the braced entry of -o smtpd_milters of submission/inet in master.cf is accept (smtpd submission/inet)")
	if !r.Failed() {
		t.Fatal("not failed")
	}
}

// The reinjection service of delivery: split: without bccguard it is right
// (not the content-filter warning); with bccguard, or with
// no_address_mappings, it fails.
func TestReinjectionService(t *testing.T) {
	addr := inetMilter(t)
	cd := right(t, addr, nil)
	// The service as shipped in deploy/postfix/master.cf.
	svc := "127.0.0.1:10026/inet=127.0.0.1:10026 inet n - n - - smtpd -o " + strings.Join(postfixtest.ReinjectOptions, " -o ")
	cd.Postconf(t, "-Me", svc)
	reinject := city + "reinject:\n  address: inet:127.0.0.1:10026\n"
	r := run(t, cd.Dir(), addr, reinject)
	want(t, r, "reinject", doctor.OK, "runs without bccguard and keeps address mappings")
	if r.Worst() != doctor.OK {
		t.Fatalf("verdict %v", r.Worst())
	}
	cd.Postconf(t, "-Me", strings.Replace(svc, "no_header_body_checks", "no_header_body_checks,no_address_mappings", 1))
	want(t, run(t, cd.Dir(), addr, reinject), "reinject", doctor.Fail, "go nowhere")
	cd.Postconf(t, "-Me", "127.0.0.1:10026/inet=127.0.0.1:10026 inet n - n - - smtpd -o smtpd_milters="+addr)
	want(t, run(t, cd.Dir(), addr, reinject), "reinject", doctor.Fail, "split again without end")
	cd.Postconf(t, "-MX", "127.0.0.1:10026/inet")
	want(t, run(t, cd.Dir(), addr, reinject), "reinject", doctor.Warn, "falls back to hiding")
	// Without reinject.address there is no such check.
	if got := run(t, cd.Dir(), addr, city).Find("reinject"); len(got) != 0 {
		t.Errorf("reinject check without reinject.address: %v", got)
	}
}

// With delivery: split only a DKIM signer may follow bccguard: any other
// milter after it (a scanner that may refuse) fails.
func TestSplitOrder(t *testing.T) {
	addr := inetMilter(t)
	cd := right(t, addr, nil)
	split := city + "policy:\n  delivery: split\nreinject:\n  address: inet:127.0.0.1:10026\nsplit:\n  state_dir: " + t.TempDir() + "\n"
	cd.Postconf(t, "-e", "smtpd_milters="+addr+", inet:127.0.0.1:8891")
	want(t, run(t, cd.Dir(), addr, split), "split order", doctor.OK, "no milter but a DKIM signer follows bccguard")
	cd.Postconf(t, "-e", "smtpd_milters="+addr+", inet:127.0.0.1:8891, unix:/clamav/clamav-milter.ctl")
	r := run(t, cd.Dir(), addr, split)
	want(t, r, "split order", doctor.Fail, "unix:/clamav/clamav-milter.ctl after bccguard")
	if !r.Failed() {
		t.Fatal("not failed")
	}
	// With hide the order does not matter: no check.
	if got := run(t, cd.Dir(), addr, city).Find("split order"); len(got) != 0 {
		t.Errorf("split order checked without split: %v", got)
	}
}

// otherMilter serves a do-nothing milter that declares actions, as a
// milter listed before bccguard would, and returns its Postfix address.
func otherMilter(t *testing.T, actions gomilter.OptAction) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := gomilter.NewServer(gomilter.WithMilter(func() gomilter.Milter { return gomilter.NoOpMilter{} }), gomilter.WithActions(actions))
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return "inet:" + ln.Addr().String()
}

// With delivery: split, a milter before bccguard that may add recipients
// warns (the original, with what it added, is discarded once every
// recipient bccguard saw has its copy); automatic BCC is said.
func TestRecipientAdders(t *testing.T) {
	addr := inetMilter(t)
	cd := right(t, addr, nil)
	split := city + "policy:\n  delivery: split\nreinject:\n  address: inet:127.0.0.1:10026\nsplit:\n  state_dir: " + t.TempDir() + "\n"
	scanner := otherMilter(t, gomilter.OptAddHeader|gomilter.OptChangeHeader)
	archiver := otherMilter(t, gomilter.OptAddHeader|gomilter.OptAddRcpt)
	cd.Postconf(t, "-e", "smtpd_milters="+scanner+", "+addr, "non_smtpd_milters="+scanner+", "+addr)
	r := run(t, cd.Dir(), addr, split)
	want(t, r, "recipient adders", doctor.OK, "no milter before bccguard may add recipients")
	if got := r.Find("automatic bcc"); len(got) != 0 {
		t.Errorf("automatic bcc said without any: %v", got)
	}
	cd.Postconf(t, "-e", "smtpd_milters="+scanner+", "+archiver+", "+addr)
	want(t, run(t, cd.Dir(), addr, split), "recipient adders", doctor.Warn, archiver+" before bccguard, and it may add recipients")
	down := closedAddr(t)
	cd.Postconf(t, "-e", "smtpd_milters="+down+", "+addr)
	want(t, run(t, cd.Dir(), addr, split), "recipient adders", doctor.Warn, "could not be asked")
	cd.Postconf(t, "-e", "smtpd_milters="+addr, "always_bcc=archive@city.example.jp")
	r = run(t, cd.Dir(), addr, split)
	want(t, r, "automatic bcc", doctor.OK, "always_bcc set in main.cf")
	want(t, r, "recipient adders", doctor.OK, "no milter before bccguard")
	// With hide nothing is discarded: no check.
	r = run(t, cd.Dir(), addr, city)
	if got := append(r.Find("recipient adders"), r.Find("automatic bcc")...); len(got) != 0 {
		t.Errorf("checked without split: %v", got)
	}
}
