package milter

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bccguard/bccguard/config"
	"github.com/bccguard/bccguard/internal/syncbuf"
)

// On a unix socket the client has no address: the warning names the
// process that connected (pid and uid from the kernel), so that an admin
// can find it.
func TestMalformedPacketOnUnixSocketNamesTheProcess(t *testing.T) {
	var logs syncbuf.Buffer
	var p atomic.Pointer[config.Config]
	p.Store(snapshot(cityPolicy(t, nil)))
	srv := NewServer(&p, nil, nil)
	protocolLog.Store(slog.New(slog.NewTextHandler(&logs, nil)))
	sock := filepath.Join(t.TempDir(), "m.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
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
