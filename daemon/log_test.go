package daemon

import (
	"log/syslog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bccguard/bccguard/config"
)

// TestSyslogOutput: with log_output syslog, records go to the local syslog
// socket with facility mail, tag bccguard, and the priority of their level.
func TestSyslogOutput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	f := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(f, []byte("log_output: syslog\n"), 0o644)
	c, err := config.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	log, _, err := newLogger(c, nil, func() (*syslog.Writer, error) {
		return syslog.Dial("unixgram", path, syslog.LOG_MAIL|syslog.LOG_INFO, syslogTag)
	})
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hello", "queue_id", "ABC")
	log.With("a", 1).WithGroup("g").Error("broken", "b", 2)
	read := func() string {
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n])
	}
	// <22> is facility mail (2) * 8 + info (6); <19> is mail + err (3).
	if got := read(); !strings.HasPrefix(got, "<22>") || !strings.Contains(got, "bccguard[") || !strings.Contains(got, "msg=hello queue_id=ABC") || strings.Contains(got, "time=") {
		t.Fatalf("info line: %q", got)
	}
	if got := read(); !strings.HasPrefix(got, "<19>") || !strings.Contains(got, "msg=broken a=1 g.b=2") {
		t.Fatalf("error line: %q", got)
	}
}

func TestSocketGroup(t *testing.T) {
	g, err := user.LookupGroup("nogroup")
	if err != nil {
		t.Fatalf("Debian always has nogroup: %v", err)
	}
	sock := filepath.Join(t.TempDir(), "s.sock")
	f := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(f, []byte("socket_group: nogroup\nsocket_mode: \"0640\"\n"), 0o644)
	c, err := config.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	startWith(t, c, "unix:"+sock)
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if gid := strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Gid)); gid != g.Gid || fi.Mode().Perm() != 0o640 {
		t.Fatalf("socket gid %s mode %v; want %s 0640", gid, fi.Mode().Perm(), g.Gid)
	}
}

// TestSyslogMissingSaysWhy: without a syslog daemon (Debian 12's default)
// the error says what is needed, not only "Unix syslog delivery error".
func TestSyslogMissingSaysWhy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log") // nothing listens here
	f := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(f, []byte("log_output: syslog\n"), 0o644)
	c, err := config.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = newLogger(c, nil, func() (*syslog.Writer, error) {
		return syslog.Dial("unixgram", path, syslog.LOG_MAIL|syslog.LOG_INFO, syslogTag)
	})
	if err == nil || !strings.Contains(err.Error(), "needs a syslog daemon listening on /dev/log") || !strings.Contains(err.Error(), "log_output: stderr") {
		t.Fatalf("error %v", err)
	}
}
