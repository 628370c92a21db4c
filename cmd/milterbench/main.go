// Command milterbench is a load driver for milters. It speaks the milter
// protocol to a filter the way Postfix 3.7 does (protocol version 6, every
// action and protocol option offered, the filter negotiates down, Postfix's
// default macros) and measures how many messages per second the filter
// handles and how long each transaction takes.
//
// Each of -sessions concurrent sessions opens one milter connection, sends
// Conn and Helo once and then -messages transactions (or as many as fit in
// -duration): Mail, one Rcpt per To address, Data, the header fields,
// end-of-header, the body and end-of-message. Every message is from an
// internal sender and has -to To addresses, the first internal and the rest
// external, so a filter like bccguard must hide them all; the driver counts
// the messages whose To field the filter changed, so that a filter that
// does nothing cannot look fast.
//
// With -idle it opens -sessions sessions, negotiates, sends Conn and Helo,
// prints "ready" and keeps them open and silent until -duration has passed
// or it is interrupted: for measuring a filter's memory per idle session.
//
// The exit status is 0 on success, 1 when a transaction or session failed
// (the numbers are printed all the same) and 2 for a usage error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("milterbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		addr     = fs.String("addr", "inet:127.0.0.1:10030", "milter address: inet:HOST:PORT or unix:/path")
		sessions = fs.Int("sessions", 1, "concurrent milter sessions")
		messages = fs.Int("messages", 1000, "messages per session (ignored with -duration)")
		duration = fs.Duration("duration", 0, "run each session for this long instead of -messages; with -idle: how long to hold the sessions (0: until interrupted)")
		to       = fs.Int("to", 3, "To addresses per message: the first internal, the rest external")
		body     = fs.Int("body", 1024, "body size in bytes")
		internal = fs.String("internal", "city.example.jp", "internal domain (sender and first To address)")
		timeout  = fs.Duration("timeout", 10*time.Second, "timeout for each read or write on a milter connection")
		idle     = fs.Bool("idle", false, "open -sessions sessions, negotiate, then hold them idle")
		pfIO     = fs.Bool("postfix-io", false, "write like Postfix over TCP: Nagle on, one burst at DATA and one at end-of-message")
		asJSON   = fs.Bool("json", false, "print one JSON object instead of text")
	)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: milterbench [flags]\n\nDrives a milter with Postfix-like sessions and reports messages/s,\nlatency, errors and how many To fields the filter changed.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "milterbench: unexpected arguments: %q\n", fs.Args())
		return 2
	}
	network, address, err := ParseAddr(*addr)
	if err != nil {
		fmt.Fprintf(stderr, "milterbench: -addr: %v\n", err)
		return 2
	}
	cfg := Config{
		Network:  network,
		Address:  address,
		Sessions: *sessions,
		Messages: *messages,
		Duration: *duration,
		To:       *to,
		Body:     *body,
		Internal: *internal,
		Timeout:  *timeout,

		PostfixIO: *pfIO,
	}
	if err := cfg.Validate(*idle); err != nil {
		fmt.Fprintf(stderr, "milterbench: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *idle {
		return runIdle(ctx, cfg, *addr, *asJSON, stdout, stderr)
	}
	res, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "milterbench: %v\n", err)
		return 1
	}
	res.Addr = *addr
	if *asJSON {
		if err := json.NewEncoder(stdout).Encode(res); err != nil {
			fmt.Fprintf(stderr, "milterbench: write result: %v\n", err)
			return 1
		}
	} else {
		printText(stdout, res)
	}
	if res.Errors > 0 {
		if res.FirstError != "" {
			fmt.Fprintf(stderr, "milterbench: %d errors; first: %s\n", res.Errors, res.FirstError)
		}
		return 1
	}
	return 0
}

func runIdle(ctx context.Context, cfg Config, addr string, asJSON bool, stdout, stderr io.Writer) int {
	ready := func(n int, negotiated string) {
		// The line scripts wait for before they measure.
		fmt.Fprintf(stdout, "ready: %d idle sessions (%s)\n", n, negotiated)
		if f, ok := stdout.(*os.File); ok {
			_ = f.Sync()
		}
	}
	if asJSON {
		ready = func(int, string) {}
	}
	res, err := Idle(ctx, cfg, ready)
	if err != nil {
		fmt.Fprintf(stderr, "milterbench: %v\n", err)
		return 1
	}
	res.Addr = addr
	if asJSON {
		_ = json.NewEncoder(stdout).Encode(res)
	} else {
		fmt.Fprintf(stdout, "held %d idle sessions for %.1fs; errors %d\n", res.Sessions, res.ElapsedSec, res.Errors)
	}
	if res.Errors > 0 {
		fmt.Fprintf(stderr, "milterbench: %d idle sessions failed; first: %s\n", res.Errors, res.FirstError)
		return 1
	}
	return 0
}

func printText(w io.Writer, r Result) {
	fmt.Fprintf(w, "milter      %s (%s)\n", r.Addr, r.Negotiated)
	fmt.Fprintf(w, "load        %d sessions, %d To addresses, %d body bytes\n", r.Sessions, r.To, r.Body)
	fmt.Fprintf(w, "messages    %d in %.3fs = %.1f msg/s\n", r.Messages, r.ElapsedSec, r.MsgsPerSec)
	fmt.Fprintf(w, "latency     p50 %.3f ms, p99 %.3f ms, max %.3f ms (Mail to end-of-message reply)\n", r.P50Ms, r.P99Ms, r.MaxMs)
	fmt.Fprintf(w, "To changed  %d of %d\n", r.Changed, r.Messages)
	fmt.Fprintf(w, "rejected    %d\n", r.Rejected)
	fmt.Fprintf(w, "errors      %d\n", r.Errors)
}
