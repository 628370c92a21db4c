package milter

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bccguard/bccguard/internal/syncbuf"
)

// On a unix socket the client has no address: the warning names the
// process that connected (pid and uid from the kernel), so that an admin
// can find it.
func TestMalformedPacketOnUnixSocketNamesTheProcess(t *testing.T) {
	var logs syncbuf.Buffer
	sock := filepath.Join(t.TempDir(), "m.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, ln, cityPolicy(t, nil), func(*Server) {
		protocolLog.Store(slog.New(slog.NewTextHandler(&logs, nil)))
	})
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{0, 0, 0, 0})
	expectClosed(t, c, 10*time.Second)
	want := fmt.Sprintf("unix:%s(pid=%d,uid=%d)", sock, os.Getpid(), os.Getuid())
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no warning naming %s:\n%s", want, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
