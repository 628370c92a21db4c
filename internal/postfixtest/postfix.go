package postfixtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/bccguard/bccguard/internal/freeaddr"
)

// Options configure an [Instance].
type Options struct {
	// Milter is the Postfix milter address, e.g. "inet:127.0.0.1:12345" or
	// "unix:/path/to/socket". It is used for both smtpd_milters (mail received
	// over SMTP) and non_smtpd_milters (mail submitted with sendmail). Empty
	// means no milter.
	//
	// Postfix connects to the milter as its mail_owner (usually "postfix"),
	// not as root. A unix socket therefore only works if every parent
	// directory is searchable by that user (t.TempDir() is mode 0700, so it
	// is not) and the socket is writable by it (e.g. chmod 0666).
	Milter string
	// DefaultAction is milter_default_action, what Postfix does when the
	// milter is unavailable or misbehaves: "accept", "reject", "tempfail" or
	// "quarantine". Empty means "tempfail".
	DefaultAction string
	// RelayTo is the host:port (usually [Sink.Addr]) that receives all mail
	// the instance accepts. Required.
	RelayTo string
	// Reinject adds a second smtpd service on its own loopback port
	// (ReinjectAddr) for mail a milter hands back to Postfix: like the
	// service in deploy/postfix/master.cf it runs no milters and serves only
	// mynetworks, and it keeps address mappings (no no_address_mappings),
	// because what is handed back has not been through virtual aliasing.
	Reinject bool
	// Extra holds additional main.cf parameters. They are applied last and
	// override the package's settings of the same name.
	Extra map[string]string
}

// Instance is a running private Postfix instance. Its methods other than
// those taking a testing.TB may be called from any goroutine.
type Instance struct {
	sys      system
	root     string // temporary directory holding everything below
	confDir  string // root/etc: main.cf, master.cf, maillog
	queueDir string // root/queue
	smtpAddr string // 127.0.0.1:port of smtpd
	// reinjectAddr is 127.0.0.1:port of the reinjection smtpd; "" without
	// Options.Reinject.
	reinjectAddr string
}

const (
	startAttempts = 3
	// startTimeout bounds the wait for smtpd to greet after "postfix start".
	startTimeout = 30 * time.Second
	// clientTimeout bounds each command of Send; it is well above the
	// milter timeouts configured below so that a slow milter shows up as a
	// Postfix reply rather than a client timeout. It is also above
	// bccguard's longest split budget (4 minutes): a milter that keeps
	// Postfix waiting with progress messages holds up the answer to DATA
	// that long. Only a hang costs the whole wait.
	clientTimeout = 5 * time.Minute
)

// Start starts a private Postfix instance that accepts SMTP on a free port of
// 127.0.0.1, passes mail through opts.Milter and relays everything to
// opts.RelayTo. The instance is stopped and its files removed when the test
// finishes.
//
// The SMTP client is reported as "unknown[127.0.0.1]" (no reverse lookup),
// and the instance retries deferred mail every second or two.
//
// Start never skips the test: if Postfix is missing or fails to start, it
// calls t.Fatalf with the reason and the instance's log. It must run as root.
func Start(t testing.TB, opts Options) *Instance {
	t.Helper()

	if h, p, err := net.SplitHostPort(opts.RelayTo); err != nil || h == "" || p == "" {
		t.Fatalf("postfixtest: Options.RelayTo %q must be host:port (e.g. Sink.Addr())", opts.RelayTo)
	}
	sys, err := lookupSystem()
	if err != nil {
		t.Fatalf("postfixtest: cannot use Postfix: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("postfixtest: must run as root (euid %d): \"postfix start\" refuses to run otherwise", os.Geteuid())
	}

	inst, err := newInstance(sys)
	if inst != nil {
		// Registered before anything is started so that a failure half-way
		// through still stops whatever runs, unregisters the directory and
		// removes it.
		t.Cleanup(func() {
			if err := inst.shutdown(); err != nil {
				t.Errorf("postfixtest: cleanup of %s: %v", inst.root, err)
			}
		})
	}
	if err != nil {
		t.Fatalf("postfixtest: %v", err)
	}

	if err := inst.configure(opts); err != nil {
		t.Fatalf("postfixtest: configure %s: %v", inst.confDir, err)
	}
	if err := editAltDirs(sys, func(dirs []string) []string {
		dirs = reapStale(sys, dirs)
		if !slices.Contains(dirs, inst.confDir) {
			dirs = append(dirs, inst.confDir)
		}
		return dirs
	}); err != nil {
		t.Fatalf("postfixtest: register %s in %s of %s/main.cf: %v", inst.confDir, altDirsParam, sys.defaultConfDir, err)
	}

	// The port is chosen by binding and closing again, so another process
	// can grab it before the master binds it. That is rare but
	// likely enough with many parallel test packages to merit a retry.
	for attempt := 1; ; attempt++ {
		port, err := freeaddr.Port()
		if err != nil {
			t.Fatalf("postfixtest: %v", err)
		}
		if err := inst.setSMTPPort(port); err != nil {
			t.Fatalf("postfixtest: configure smtpd port: %v", err)
		}
		if opts.Reinject {
			port, err := freeaddr.Port()
			if err != nil {
				t.Fatalf("postfixtest: %v", err)
			}
			if err := inst.setReinjectPort(port); err != nil {
				t.Fatalf("postfixtest: configure reinjection port: %v", err)
			}
		}
		_, err = runWithTTY(sys.postfix, "-c", inst.confDir, "start")
		if err == nil {
			break
		}
		// The master logs only through postlogd, which is not running yet
		// when the master fails to bind its listeners, so a port collision
		// never shows up in the maillog; probe the port instead.
		inUse := portInUse(inst.smtpAddr) || (inst.reinjectAddr != "" && portInUse(inst.reinjectAddr))
		if inUse && attempt < startAttempts {
			t.Logf("postfixtest: port %d was taken, retrying: %v", port, err)
			_ = stopInstance(sys, inst.confDir, inst.queueDir)
			continue
		}
		hint := ""
		if inUse {
			hint = fmt.Sprintf("\n(%s or %q is in use by another process)", inst.smtpAddr, inst.reinjectAddr)
		}
		t.Fatalf("postfixtest: start Postfix in %s: %v%s\n%s", inst.confDir, err, hint, inst.logSection())
	}

	if err := inst.waitGreeting(startTimeout); err != nil {
		t.Fatalf("postfixtest: Postfix in %s started but smtpd on %s is not answering: %v\n%s",
			inst.confDir, inst.smtpAddr, err, inst.logSection())
	}
	return inst
}

// newInstance creates the directory tree. Every directory on the way to the
// queue must be searchable by the mail_owner, because Postfix daemons run as
// that user and chdir into the queue directory; hence 0755 rather than the
// 0700 that os.MkdirTemp uses.
func newInstance(sys system) (*Instance, error) {
	root, err := os.MkdirTemp("", rootPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("create instance directory: %w", err)
	}
	inst := &Instance{
		sys:      sys,
		root:     root,
		confDir:  filepath.Join(root, confSubdir),
		queueDir: filepath.Join(root, "queue"),
	}
	if err := os.Chmod(root, 0o755); err != nil {
		return inst, fmt.Errorf("chmod %s: %w", root, err)
	}
	// The queue directory itself must be root-owned (postfix check warns
	// otherwise); "postfix start" creates its subdirectories with the right
	// owners via post-install create-missing.
	for _, dir := range []string{inst.confDir, inst.queueDir} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return inst, fmt.Errorf("create %s: %w", dir, err)
		}
	}
	// The data directory (master.lock, caches) belongs to the mail_owner.
	dataDir := filepath.Join(root, "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		return inst, fmt.Errorf("create %s: %w", dataDir, err)
	}
	u, err := user.Lookup(sys.mailOwner)
	if err != nil {
		return inst, fmt.Errorf("look up mail_owner: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dataDir, uid, gid); err != nil {
		return inst, fmt.Errorf("chown %s to %s: %w", dataDir, sys.mailOwner, err)
	}
	// Lets a later Start recognise this instance as orphaned if this test
	// process dies without running its cleanups.
	owner := filepath.Join(root, ownerFile)
	if err := os.WriteFile(owner, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return inst, fmt.Errorf("write %s: %w", owner, err)
	}
	return inst, nil
}

// configure writes main.cf and master.cf.
func (i *Instance) configure(opts Options) error {
	action := opts.DefaultAction
	if action == "" {
		action = "tempfail"
	}
	params := map[string]string{
		"compatibility_level": "3.6",
		"queue_directory":     i.queueDir,
		"data_directory":      filepath.Join(i.root, "data"),

		// Postfix logs to syslog by default, which is usually absent in
		// containers; postlogd writes a private file instead. The file must
		// be below one of maillog_file_prefixes.
		"maillog_file":          filepath.Join(i.confDir, "maillog"),
		"maillog_file_prefixes": i.confDir,

		"myhostname":      "mx.test.invalid",
		"mydomain":        "test.invalid",
		"myorigin":        "$myhostname",
		"mydestination":   "", // Nothing is delivered locally: all mail goes to RelayTo.
		"inet_interfaces": "127.0.0.1",
		"inet_protocols":  "ipv4",
		"mynetworks":      "127.0.0.0/8",
		// Explicit, so that a future default cannot turn the instance into a
		// rejecting one: loopback clients may relay anywhere.
		"smtpd_relay_restrictions": "permit_mynetworks, reject",
		"relayhost":                "[" + hostOnly(opts.RelayTo) + "]:" + portOnly(opts.RelayTo),

		// No DNS and no internet: the relayhost is an IP literal, and smtpd
		// must not depend on how the host resolves 127.0.0.1 (a reverse
		// lookup can hang for seconds with an unreachable resolver). As a
		// result the client is always "unknown[127.0.0.1]", also for the
		// milter's connect callback; override with Extra if that matters.
		"smtp_dns_support_level": "disabled",
		"smtp_host_lookup":       "native",
		"smtpd_peername_lookup":  "no",
		"smtp_connect_timeout":   "5s",
		// Local delivery is disabled, so aliases are never used; not naming
		// /etc/aliases avoids warnings about a missing aliases.db.
		"alias_maps":      "",
		"alias_database":  "",
		"biff":            "no",
		"smtputf8_enable": "yes",

		"smtpd_milters":         opts.Milter,
		"non_smtpd_milters":     opts.Milter,
		"milter_default_action": action,
		"milter_protocol":       "6",
		// A milter that is gone shows at once as a refused or closed
		// connection; these timeouts cut a milter that accepts and then
		// does not answer (after 60 s) or a slow answer, which on a loaded
		// machine with a race-built milter can take seconds. Tests of the
		// timeouts themselves set their own.
		"milter_connect_timeout": "5s",
		"milter_command_timeout": "60s",
		"milter_content_timeout": "60s",

		// Retry deferred mail quickly, so tests that make the next hop or
		// milter fail temporarily can observe the retry in seconds.
		"queue_run_delay":      "1s",
		"minimal_backoff_time": "1s",
		"maximal_backoff_time": "2s",
		// By default smtpd slows down clients that cause errors and delays
		// accepting mail when the queue manager lags behind, which only makes
		// tests slower.
		"smtpd_error_sleep_time": "0s",
		"in_flow_delay":          "0s",
	}
	maps.Copy(params, opts.Extra)

	var mainCF strings.Builder
	mainCF.WriteString("# Generated by postfixtest for a single test; removed when it ends.\n")
	for _, k := range slices.Sorted(maps.Keys(params)) {
		v := params[k]
		if strings.ContainsAny(k+v, "\n\r") || k == "" {
			return fmt.Errorf("invalid main.cf parameter %q = %q", k, v)
		}
		fmt.Fprintf(&mainCF, "%s = %s\n", k, v)
	}
	mainPath := filepath.Join(i.confDir, "main.cf")
	if err := os.WriteFile(mainPath, []byte(mainCF.String()), 0o644); err != nil {
		return fmt.Errorf("write main.cf: %w", err)
	}
	if err := backdate(mainPath); err != nil {
		return err
	}

	// Starting from the system master.cf keeps the instance close to what
	// the milter will meet in production.
	master, err := os.ReadFile(filepath.Join(i.sys.defaultConfDir, "master.cf"))
	if err != nil {
		return fmt.Errorf("read system master.cf: %w", err)
	}
	if err := os.WriteFile(filepath.Join(i.confDir, "master.cf"), master, 0o644); err != nil {
		return fmt.Errorf("write master.cf: %w", err)
	}
	// Debian (and others) chroot most services into the queue directory,
	// which would need copies of /etc/hosts, libraries etc. in every
	// instance's queue; running unchrooted needs none of that.
	if _, err := i.postconf("-F", "*/*/chroot = n"); err != nil {
		return err
	}
	// Every inet service in the system master.cf (smtp on port 25, maybe
	// submission, ...) would collide with the system Postfix and with other
	// instances; setSMTPPort adds the one listener we want.
	services, err := i.postconf("-M")
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(strings.NewReader(services))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[1] == "inet" {
			if _, err := i.postconf("-MX", f[0]+"/inet"); err != nil {
				return err
			}
		}
	}
	// maillog_file only works through the postlog service; "postfix start"
	// refuses to run without it. Old master.cf files lack it.
	out, err := i.postconf("-M", "postlog/unix-dgram")
	if err != nil {
		return err
	}
	if strings.TrimSpace(out) == "" {
		if _, err := i.postconf("-Me", "postlog/unix-dgram=postlog unix-dgram n - n - 1 postlogd"); err != nil {
			return err
		}
	}
	return nil
}

// setSMTPPort makes smtpd listen on 127.0.0.1:port, replacing any previous
// listener.
func (i *Instance) setSMTPPort(port int) error {
	if i.smtpAddr != "" {
		if _, err := i.postconf("-MX", i.smtpAddr+"/inet"); err != nil {
			return err
		}
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if _, err := i.postconf("-Me", addr+"/inet="+addr+" inet n - n - - smtpd"); err != nil {
		return err
	}
	i.smtpAddr = addr
	return nil
}

// ReinjectOptions are the master.cf -o options of the reinjection service,
// the same as in deploy/postfix/master.cf (a test compares the two).
var ReinjectOptions = []string{
	"syslog_name=postfix/reinject",
	"smtpd_milters=",
	"non_smtpd_milters=",
	"mynetworks=127.0.0.0/8",
	"smtpd_client_restrictions=permit_mynetworks,reject",
	"smtpd_helo_restrictions=",
	"smtpd_sender_restrictions=",
	"smtpd_recipient_restrictions=permit_mynetworks,reject",
	"smtpd_relay_restrictions=permit_mynetworks,reject",
	"smtpd_data_restrictions=",
	"smtpd_end_of_data_restrictions=",
	"receive_override_options=no_unknown_recipient_checks,no_header_body_checks",
}

// setReinjectPort makes the reinjection smtpd listen on 127.0.0.1:port,
// replacing any previous listener.
func (i *Instance) setReinjectPort(port int) error {
	if i.reinjectAddr != "" {
		if _, err := i.postconf("-MX", i.reinjectAddr+"/inet"); err != nil {
			return err
		}
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	entry := addr + "/inet=" + addr + " inet n - n - - smtpd"
	for _, o := range ReinjectOptions {
		entry += " -o " + o
	}
	if _, err := i.postconf("-Me", entry); err != nil {
		return err
	}
	i.reinjectAddr = addr
	return nil
}

// postconf runs postconf against the instance's configuration.
func (i *Instance) postconf(args ...string) (string, error) {
	return run(i.sys.postconf, append([]string{"-c", i.confDir}, args...)...)
}

// waitGreeting waits until smtpd sends its greeting. A successful TCP
// connect alone proves little: the master binds the socket itself and only
// then spawns smtpd, which may still fail on a configuration error.
func (i *Instance) waitGreeting(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		lastErr = i.probeGreeting(deadline)
		if lastErr == nil {
			return nil
		}
		if pid := masterPID(i.queueDir); pid == 0 || !processAlive(pid) {
			return fmt.Errorf("the master process exited: %w", lastErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no SMTP greeting within %v: %w", timeout, lastErr)
}

func (i *Instance) probeGreeting(deadline time.Time) error {
	conn, err := net.DialTimeout("tcp", i.smtpAddr, time.Until(deadline))
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read greeting: %w", err)
	}
	// Any reply code will do: with an unreachable milter smtpd still greets
	// normally and only rejects later commands.
	if len(line) < 4 || line[0] < '2' || line[0] > '5' {
		return fmt.Errorf("unexpected greeting %q", line)
	}
	_, _ = conn.Write([]byte("QUIT\r\n"))
	return nil
}

// shutdown stops the instance, unregisters it and removes its files.
func (i *Instance) shutdown() error {
	var errs []error
	if err := stopInstance(i.sys, i.confDir, i.queueDir); err != nil {
		errs = append(errs, fmt.Errorf("stop: %w", err))
	}
	if err := editAltDirs(i.sys, func(dirs []string) []string {
		return slices.DeleteFunc(dirs, func(d string) bool { return d == i.confDir })
	}); err != nil {
		errs = append(errs, fmt.Errorf("unregister from %s: %w", altDirsParam, err))
	}
	if err := os.RemoveAll(i.root); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// SMTPAddr returns the host:port on which the instance's smtpd listens.
func (i *Instance) SMTPAddr() string { return i.smtpAddr }

// ReinjectAddr returns the host:port of the reinjection smtpd (no
// milters), or "" when Options.Reinject was not set.
func (i *Instance) ReinjectAddr() string { return i.reinjectAddr }

// Dir returns the instance's configuration directory (the argument for
// "postconf -c" and friends). It also holds the maillog. Queue and data
// directories are its siblings ../queue and ../data.
func (i *Instance) Dir() string { return i.confDir }

// Log returns the instance's maillog. Postfix writes it asynchronously
// through postlogd, so the newest lines may appear with a short delay.
func (i *Instance) Log() string {
	b, err := os.ReadFile(filepath.Join(i.confDir, "maillog"))
	if err != nil {
		return fmt.Sprintf("(maillog unavailable: %v)", err)
	}
	return string(b)
}

func (i *Instance) logSection() string {
	return "--- maillog " + filepath.Join(i.confDir, "maillog") + " ---\n" + i.Log()
}

// Send submits msg over SMTP to the instance with the given envelope sender
// and recipients, as a remote MTA would. Bare LF line endings in msg are sent
// as CRLF. The error wraps the server's reply as a *smtp.SMTPError (from
// github.com/emersion/go-smtp) when Postfix rejects a command, so tests can
// tell temporary (4xx) from permanent (5xx) rejections with errors.As.
func (i *Instance) Send(from string, rcpts []string, msg []byte) error {
	c, err := smtp.Dial(i.smtpAddr)
	if err != nil {
		return fmt.Errorf("postfixtest: connect to %s: %w", i.smtpAddr, err)
	}
	defer c.Close()
	c.CommandTimeout = clientTimeout
	c.SubmissionTimeout = clientTimeout
	if err := c.Hello("client.test.invalid"); err != nil {
		return fmt.Errorf("postfixtest: EHLO: %w", err)
	}
	if err := c.SendMail(from, rcpts, bytes.NewReader(msg)); err != nil {
		return fmt.Errorf("postfixtest: send from <%s> to %v via %s: %w", from, rcpts, i.smtpAddr, err)
	}
	if err := c.Quit(); err != nil {
		return fmt.Errorf("postfixtest: QUIT: %w", err)
	}
	return nil
}

func hostOnly(hostport string) string {
	h, _, _ := net.SplitHostPort(hostport)
	return h
}

func portOnly(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}

// portInUse reports whether addr cannot be bound because someone else has.
func portInUse(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return errors.Is(err, syscall.EADDRINUSE)
	}
	l.Close()
	return false
}
