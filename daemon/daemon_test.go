package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bccguard/bccguard/audit"
	"github.com/bccguard/bccguard/config"
	"github.com/bccguard/bccguard/internal/freeaddr"
	"github.com/bccguard/bccguard/internal/miltertest"
	"github.com/bccguard/bccguard/internal/syncbuf"
)

// logBuffer collects JSON log lines from the daemon.
type logBuffer struct {
	syncbuf.Buffer
}

// records returns the log records whose msg is msg.
func (b *logBuffer) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

const baseConfig = "log_format: json\nlog_level: debug\ninternal_domains: [city.example.jp]\n"

type testDaemon struct {
	*Daemon
	file, addr string
	logs       *logBuffer
}

// start runs a daemon on a free port with the config body written to a
// file, so that Reload can be tested by rewriting it.
func start(t *testing.T, body string) *testDaemon {
	t.Helper()
	file := filepath.Join(t.TempDir(), "bccguard.yaml")
	writeFile(t, file, body)
	c, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	log, level, err := NewLogger(c, logs)
	if err != nil {
		t.Fatal(err)
	}
	addr := freeaddr.Loopback(t)
	d, err := Start(c, Options{File: file, Listen: "inet:" + addr, Version: "test"}, log, level)
	if err != nil {
		t.Fatal(err)
	}
	shutdownAtEnd(t, d)
	return &testDaemon{Daemon: d, file: file, addr: addr, logs: logs}
}

// shutdownAtEnd stops d when the test ends.
func shutdownAtEnd(t *testing.T, d *Daemon) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		d.Shutdown(ctx)
	})
}

// startWith runs a daemon with c on listen, logging nowhere.
func startWith(t *testing.T, c *config.Config, listen string) *Daemon {
	t.Helper()
	d, err := Start(c, Options{Listen: listen}, slog.New(slog.DiscardHandler), new(slog.LevelVar))
	if err != nil {
		t.Fatal(err)
	}
	shutdownAtEnd(t, d)
	return d
}

var twoExternal = miltertest.Message{Sender: "staff@city.example.jp", QueueID: "Q1",
	Header: [][2]string{{"To", "Alice <alice@ext.example>, bob@other.example"}}}

// converts reports whether a new session converts twoExternal.
func (d *testDaemon) converts(t *testing.T) bool {
	t.Helper()
	_, changed := miltertest.ToValue(must(miltertest.Dial(t, "tcp", d.addr).Send(t, twoExternal)))
	return changed
}

func TestReload(t *testing.T) {
	d := start(t, baseConfig)
	if !d.converts(t) {
		t.Fatal("not converted at start")
	}

	// A good file takes effect for new sessions.
	writeFile(t, d.file, baseConfig+"policy:\n  threshold: 3\n")
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if d.converts(t) {
		t.Fatal("reloaded threshold 3 not applied")
	}

	// A bad file is refused with every problem, and the old config serves.
	writeFile(t, d.file, baseConfig+"policy:\n  threshold: 0\n  move: sideways\n")
	if err := d.Reload(); err == nil {
		t.Fatal("bad config accepted")
	}
	if d.converts(t) {
		t.Fatal("bad reload changed the rules")
	}
	problems := d.logs.records(t, "config reload refused; the old config keeps serving")
	if len(problems) != 2 || !strings.Contains(problems[0]["problem"].(string), d.file) {
		t.Fatalf("refusal log: %v", problems)
	}

	// A removed file is refused too.
	os.Remove(d.file)
	if err := d.Reload(); err == nil {
		t.Fatal("reload of a removed file accepted")
	}
	if d.converts(t) {
		t.Fatal("removed file changed the rules")
	}

	// An empty file (a truncating editor) is a valid config of defaults:
	// every key has a default. It must not be a half-read state.
	writeFile(t, d.file, "")
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if !d.converts(t) {
		t.Fatal("defaults after an empty file do not convert")
	}
	m := d.scrape(t, "/metrics")
	if !loadDuration.MatchString(m) || loadDuration.FindStringSubmatch(m)[1] == "0" {
		t.Errorf("no positive config load duration in\n%s", m)
	}
	for _, want := range []string{`bccguard_config_reloads_total{result="failure"} 2`, `bccguard_config_reloads_total{result="success"} 2`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// loadDuration finds the gauge's value, which Prometheus writes as 0.0004
// or as 4e-05.
var loadDuration = regexp.MustCompile(`(?m)^bccguard_config_load_duration_seconds (\S+)$`)

func (d *testDaemon) scrape(t *testing.T, path string) string {
	t.Helper()
	rec := &responseRecorder{}
	req, _ := http.NewRequest("GET", path, nil)
	d.metrics.Handler(d.readiness).ServeHTTP(rec, req)
	return rec.String()
}

type responseRecorder struct {
	bytes.Buffer
	code int
	h    http.Header
}

func (r *responseRecorder) Header() http.Header {
	if r.h == nil {
		r.h = http.Header{}
	}
	return r.h
}
func (r *responseRecorder) WriteHeader(c int) { r.code = c }

func TestShutdownWaitsForSessionInFlight(t *testing.T) {
	d := start(t, baseConfig)
	s := miltertest.Dial(t, "tcp", d.addr)
	if err := s.Begin(twoExternal); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		// Shutdown cuts the session at this deadline: it must not pass
		// before the steps below are done, however slow the machine.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		done <- d.Shutdown(ctx)
	}()
	// New connections are refused once shutdown began...
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", d.addr)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting after Shutdown")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned with a session in flight: %v", err)
	default:
	}
	// ...but the message in flight is still decided and converted.
	mods, act, err := s.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := miltertest.ToValue(mods); !ok || v != "undisclosed-recipients:;" || act.StopProcessing() {
		t.Fatalf("in-flight message: %v %v", mods, act)
	}
	s.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not return after the last session ended")
	}
	if got := d.scrape(t, "/readyz"); !strings.Contains(got, "not ready") {
		t.Fatalf("readyz after shutdown: %q", got)
	}
}

func TestShutdownDeadlineCutsIdleSession(t *testing.T) {
	d := start(t, baseConfig)
	s := miltertest.Dial(t, "tcp", d.addr)
	if err := s.Begin(twoExternal); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := d.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// The cut session cannot be finished: Postfix then applies
	// milter_default_action (tempfail); nothing passes unconverted.
	if mods, act, err := s.Finish(); err == nil {
		t.Fatalf("session survived the deadline: %v %v", mods, act)
	}
}

func TestMetricsAndHealth(t *testing.T) {
	port := freeaddr.Loopback(t)
	d := start(t, baseConfig+"metrics_listen: "+port+"\n")
	d.converts(t)
	miltertest.Dial(t, "tcp", d.addr).Send(t, miltertest.Message{Sender: "staff@city.example.jp",
		Header: [][2]string{{"To", "x@city.example.jp"}}})
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + port + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("healthz %d", code)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("readyz %d", code)
	}
	_, m := get("/metrics")
	for _, want := range []string{
		`bccguard_messages_total{action="convert",dry_run="false"} 1`,
		`bccguard_messages_total{action="pass",dry_run="false"} 1`,
		`bccguard_addresses_moved_total 2`,
		`bccguard_decision_duration_seconds_count 2`,
		`bccguard_sessions_in_flight`,
		`bccguard_config_loaded_timestamp_seconds`,
		`bccguard_build_info{goversion=`,
		`bccguard_parse_errors_total{kind="unreadable"} 0`,
		`bccguard_passed_total{reason="internal_only"} 1`,
		`bccguard_passed_total{reason="sender_not_covered"} 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestAuditRecord(t *testing.T) {
	for _, tc := range []struct {
		mode    string
		to      any
		sender  any
		noAtAll bool
	}{
		{"domain", []any{"ext.example", "other.example"}, nil, true},
		{"none", nil, nil, true},
		{"hash", []any{audit.HashAddress([]byte("0123456789abcdef"), "alice@ext.example"), audit.HashAddress([]byte("0123456789abcdef"), "bob@other.example")},
			audit.HashAddress([]byte("0123456789abcdef"), "staff@city.example.jp"), true},
		{"full", []any{"alice@ext.example", "bob@other.example"}, "staff@city.example.jp", false},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			d := start(t, baseConfig+"audit:\n  recipients: "+tc.mode+"\n  hash_key: 0123456789abcdef\n")
			d.converts(t)
			recs := d.logs.records(t, "decision")
			if len(recs) != 1 {
				t.Fatalf("%d decision records:\n%s", len(recs), d.logs)
			}
			r := recs[0]
			for k, want := range map[string]any{"queue_id": "Q1", "action": "convert", "dry_run": false, "sender_domain": "city.example.jp",
				"to_total": 2.0, "to_external": 2.0, "moved": 2.0, "rule": "internal_domains", "threshold": 2.0, "level": "INFO"} {
				if r[k] != want {
					t.Errorf("%s = %v, want %v", k, r[k], want)
				}
			}
			if _, ok := r["duration"]; !ok {
				t.Error("no duration")
			}
			if got, _ := json.Marshal(r["to"]); string(got) != string(mustJSON(tc.to)) {
				t.Errorf("to = %s, want %s", got, mustJSON(tc.to))
			}
			if r["sender"] != tc.sender {
				t.Errorf("sender = %v, want %v", r["sender"], tc.sender)
			}
			if tc.noAtAll && strings.Contains(d.logs.String(), "@") {
				t.Errorf("an address reached the log in mode %s:\n%s", tc.mode, d.logs)
			}
		})
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func TestUnixSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "bccguard.sock")
	// A stale socket from a crash is removed...
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	c, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	d := startWith(t, c, "unix:"+sock)
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}
	if _, changed := miltertest.ToValue(must(miltertest.Dial(t, "unix", sock).Send(t, twoExternal))); !changed {
		t.Fatal("not converted over the unix socket")
	}
	// ...but a live one is not taken over.
	if _, err := Start(c, Options{Listen: "unix:" + sock}, slog.New(slog.DiscardHandler), new(slog.LevelVar)); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second daemon on a live socket: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := d.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
}

func TestAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, _ := config.Load("")
	_, err = Start(c, Options{Listen: "inet:" + ln.Addr().String()}, slog.New(slog.DiscardHandler), new(slog.LevelVar))
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("err = %v", err)
	}
}

// TestStartReportsDamagedSplitRecords: a split.db that cannot be read is
// reported at start, at error level, and the daemon serves (hiding).
func TestStartReportsDamagedSplitRecords(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "split.db"), bytes.Repeat([]byte{0xa5}, 4*4096), 0o600); err != nil {
		t.Fatal(err)
	}
	d := start(t, baseConfig+"policy:\n  delivery: split\nreinject:\n  address: inet:127.0.0.1:1\nsplit:\n  state_dir: "+dir+"\n")
	if r := d.logs.records(t, "split records unusable: every message to split is hidden instead until bccguard is restarted with usable records; see docs/reliability.md"); len(r) != 1 || r[0]["level"] != "ERROR" {
		t.Fatalf("start did not report the damaged records: %v\n%s", r, d.logs.String())
	}
	if !d.converts(t) {
		t.Error("the daemon does not hide with damaged records")
	}
}
