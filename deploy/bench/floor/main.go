// Command floor is the fastest filter that does bccguard's job on the
// benchmark's messages: it reads nothing and changes the To field of every
// message to "undisclosed-recipients:;". It negotiates exactly what
// bccguard negotiates (the same actions, protocol options and macro
// request), so the difference between bccguard and floor is the cost of
// bccguard's own code; what is left of floor's time is go-milter and the
// milter protocol. It is a benchmark tool only, not part of bccguard.
//
//	floor -listen inet:127.0.0.1:10031
//	floor -listen unix:/run/floor.sock
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	gomilter "github.com/d--j/go-milter"

	"github.com/bccguard/bccguard/milter"
)

type floorMilter struct{ gomilter.NoOpMilter }

// Header ignores the field; with NR_HDR negotiated no reply is sent.
func (floorMilter) Header(string, string, gomilter.Modifier) (*gomilter.Response, error) {
	return nil, nil
}

// EndOfMessage hides the To field of every message.
func (floorMilter) EndOfMessage(m gomilter.Modifier) (*gomilter.Response, error) {
	if err := m.ChangeHeader(1, "To", "undisclosed-recipients:;"); err != nil {
		return nil, fmt.Errorf("floor: change To: %w", err)
	}
	return gomilter.RespAccept, nil
}

func main() {
	listen := flag.String("listen", "inet:127.0.0.1:10031", "inet:HOST:PORT or unix:/path")
	flag.Parse()
	if err := serve(*listen); err != nil {
		fmt.Fprintf(os.Stderr, "floor: %v\n", err)
		os.Exit(1)
	}
}

func serve(listen string) error {
	kind, addr, ok := strings.Cut(listen, ":")
	network := map[string]string{"inet": "tcp", "unix": "unix"}[kind]
	if !ok || network == "" || addr == "" {
		return fmt.Errorf("-listen %q: want inet:HOST:PORT or unix:/path", listen)
	}
	if network == "unix" {
		_ = os.Remove(addr)
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if network == "unix" {
		// Postfix connects as its mail_owner, not as root.
		if err := os.Chmod(addr, 0o666); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
	}
	srv := gomilter.NewServer(
		gomilter.WithMilter(func() gomilter.Milter { return floorMilter{} }),
		gomilter.WithActions(milter.Actions),
		gomilter.WithProtocols(milter.Protocol),
		gomilter.WithMacroRequest(gomilter.StageEOM, []gomilter.MacroName{gomilter.MacroQueueId}),
	)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, gomilter.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
