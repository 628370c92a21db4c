package e2e

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"net"
	"net/http"
	netmail "net/mail"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/mail"
	"golang.org/x/text/encoding/japanese"

	"github.com/bccguard/bccguard/internal/freeaddr"
	"github.com/bccguard/bccguard/internal/postfixtest"
)

// noticeSetup starts a sink, Postfix with its reinjection service, and
// the daemon whose config (cfg, with REINJECT and METRICS filled in) hands
// notices to that service, or to reinject when it is not "".
func noticeSetup(t *testing.T, cfg, reinject string) (*postfixtest.Sink, *daemon, *postfixtest.Instance, string) {
	t.Helper()
	sink := postfixtest.StartSink(t)
	addr := freeaddr.Loopback(t)
	// Postfix first: the daemon's config needs the reinjection port, and
	// Postfix reaches the milter only when mail comes.
	pf := postfixtest.Start(t, postfixtest.Options{
		Milter:        "inet:" + addr,
		DefaultAction: "tempfail",
		RelayTo:       sink.Addr(),
		Reinject:      true,
	})
	if reinject == "" {
		reinject = pf.ReinjectAddr()
	}
	metrics := freeaddr.Loopback(t)
	cfg = strings.NewReplacer("REINJECT", reinject, "METRICS", metrics).Replace(cfg)
	d := startDaemon(t, writeConfig(t, cfg), addr)
	return sink, d, pf, metrics
}

const noticeConfig = `
internal_domains: [city.example.jp, .city.example.jp]
log_level: debug
shutdown_timeout: 5s
metrics_listen: METRICS
reinject:
  address: inet:REINJECT
policy:
  notify_sender: true
  notify_copy_to: [security@city.example.jp]
domains:
  - domain: city.example.jp
  - domain: trial.city.example.jp
    dry_run: true
    notify_copy_to: []
exempt_senders: [system@city.example.jp]
notice:
  from: 情報政策課 <postmaster@city.example.jp>
  min_interval: 1h
`

// staffMessage is a message as Japanese mail clients still write them:
// the Subject in ISO-2022-JP, RFC 2047 encoded.
func staffMessage(from, subject, to string) []byte {
	jis, err := japanese.ISO2022JP.NewEncoder().String(subject)
	if err != nil {
		panic(err)
	}
	encoded := "=?ISO-2022-JP?B?" + base64.StdEncoding.EncodeToString([]byte(jis)) + "?="
	return []byte("From: " + from + "\r\nTo: " + to + "\r\nSubject: " + encoded +
		"\r\nDate: Wed, 02 Dec 2026 10:00:00 +0900\r\nMessage-ID: <" + strings.SplitN(from, "@", 2)[0] + "." + strconv.Itoa(len(subject)) + "@mua.city.example.jp>\r\n\r\n本文\r\n")
}

// isNotice tells notices from originals by the header only notices have.
func isNotice(d postfixtest.Delivery) bool {
	return bytes.Contains(d.Data, []byte("\r\nX-BCCGuard-Notice: "))
}

func metricValue(t *testing.T, addr, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no %s in\n%s", series, b)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// receivedID returns the queue id Postfix gave a delivered message.
func receivedID(t *testing.T, data []byte) string {
	t.Helper()
	m := regexp.MustCompile(`with E?SMTP id ([0-9A-Za-z]+)`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("no queue id in\n%s", data)
	}
	return string(m[1])
}

// checkNotice parses a notice as a mail client would (net/mail and
// go-message) and checks its envelope and header against the original.
func checkNotice(t *testing.T, n, original postfixtest.Delivery, sender, kind string, rcpts []string) string {
	t.Helper()
	if n.From != "" {
		t.Errorf("notice envelope sender <%s>, want <>", n.From)
	}
	if !slices.Equal(sorted(n.Rcpts), sorted(rcpts)) {
		t.Errorf("notice went to %q, want %q", n.Rcpts, rcpts)
	}
	m, err := netmail.ReadMessage(bytes.NewReader(n.Data))
	if err != nil {
		t.Fatalf("net/mail: %v\n%s", err, n.Data)
	}
	h := m.Header
	origID := header(t, original.Data)
	for name, want := range map[string]string{
		"To":                "<" + sender + ">",
		"Auto-Submitted":    "auto-generated",
		"X-BCCGuard-Notice": kind,
		"Content-Type":      "text/plain; charset=UTF-8",
		"In-Reply-To":       field(origID, "Message-ID"),
		"References":        field(origID, "Message-ID"),
	} {
		if got := h.Get(name); got != want {
			t.Errorf("notice %s: %q, want %q", name, got, want)
		}
	}
	from, err := h.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Name != "情報政策課" || from[0].Address != "postmaster@city.example.jp" {
		t.Errorf("notice From: %v (%v)", from, err)
	}
	if _, err := h.Date(); err != nil || h.Get("Message-ID") == "" {
		t.Errorf("notice Date %q, Message-ID %q", h.Get("Date"), h.Get("Message-ID"))
	}
	if h.Get("X-BCCGuard") != "" {
		t.Error("the notice went through bccguard")
	}
	mr, err := mail.CreateReader(bytes.NewReader(n.Data))
	if err != nil {
		t.Fatalf("go-message: %v", err)
	}
	subject, err := mr.Header.Subject()
	if err != nil || !strings.HasPrefix(subject, "【bccguard") {
		t.Errorf("notice Subject %q (%v), raw %q", subject, err, h.Get("Subject"))
	}
	p, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(p.Body)
	if !utf8.Valid(body) {
		t.Errorf("notice body is not UTF-8:\n%q", body)
	}
	if id := receivedID(t, original.Data); !bytes.Contains(body, []byte("受付番号: "+id)) {
		t.Errorf("notice does not name the original's queue id %s:\n%s", id, body)
	}
	return subject
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestNoticesThroughPostfix: a conversion gives exactly one notice to the
// sender and one to notify_copy_to, through the reinjection service; a
// second one within min_interval none; another sender their own; a pass
// none; a dry-run rule the dry-run notice and the original unchanged; and
// a notice queued just before SIGTERM still goes out.
func TestNoticesThroughPostfix(t *testing.T) {
	sink, d, pf, metrics := noticeSetup(t, noticeConfig, "")
	twoOut := "a@ext.example, b@other.example"
	sends := []struct {
		from, subject, to string
	}{
		{"staff1@city.example.jp", "会議のご案内", twoOut},
		{"staff1@city.example.jp", "会議のご案内（再送）", twoOut},
		{"staff2@city.example.jp", "資料送付", twoOut},
		{"staff2@city.example.jp", "内部連絡", "x@city.example.jp, y@kikaku.city.example.jp"},
		{"staff3@trial.city.example.jp", "試行", twoOut},
		{"system@city.example.jp", "一斉送信", twoOut}, // exempt: passes, no notice
		{"", "不達通知", twoOut},                       // a bounce: passes, no notice
	}
	for _, s := range sends {
		rcpts := []string{"a@ext.example", "b@other.example"}
		if !strings.Contains(s.to, "ext.example") {
			rcpts = []string{"x@city.example.jp", "y@kikaku.city.example.jp"}
		}
		from := s.from
		if from == "" {
			from = "mailer-daemon@city.example.jp"
		}
		if err := pf.Send(s.from, rcpts, staffMessage(from, s.subject, s.to)); err != nil {
			t.Fatalf("send %s: %v\n%s", s.subject, err, d.log)
		}
	}
	// Seven originals and three notices; then nothing more.
	got := sink.WaitFor(t, 10, 60*time.Second)
	time.Sleep(3 * time.Second)
	if got = sink.Deliveries(); len(got) != 10 {
		t.Fatalf("%d deliveries, want 10 (7 originals, 3 notices)%s", len(got), d.log)
	}
	originals := map[string]postfixtest.Delivery{}
	var notices []postfixtest.Delivery
	for _, dl := range got {
		if isNotice(dl) {
			notices = append(notices, dl)
			continue
		}
		s, err := (&mime.WordDecoder{CharsetReader: charset.Reader}).DecodeHeader(field(header(t, dl.Data), "Subject"))
		if err != nil {
			t.Fatal(err)
		}
		originals[s] = dl
	}
	if len(notices) != 3 || len(originals) != 7 {
		t.Fatalf("%d notices, %d originals", len(notices), len(originals))
	}
	byTo := map[string]postfixtest.Delivery{}
	for _, n := range notices {
		to := header(t, n.Data)
		byTo[field(to, "To")] = n
	}
	s1 := checkNotice(t, byTo["<staff1@city.example.jp>"], originals["会議のご案内"], "staff1@city.example.jp", "converted",
		[]string{"staff1@city.example.jp", "security@city.example.jp"})
	if s1 != "【bccguard】宛先を非表示にして送信しました: 会議のご案内" {
		t.Errorf("subject %q", s1)
	}
	checkNotice(t, byTo["<staff2@city.example.jp>"], originals["資料送付"], "staff2@city.example.jp", "converted",
		[]string{"staff2@city.example.jp", "security@city.example.jp"})
	checkNotice(t, byTo["<staff3@trial.city.example.jp>"], originals["試行"], "staff3@trial.city.example.jp", "dry-run",
		[]string{"staff3@trial.city.example.jp"})
	// The originals: converted, except the pass and the dry run.
	for subject, wantTo := range map[string]string{
		"会議のご案内": "undisclosed-recipients:;", "会議のご案内（再送）": "undisclosed-recipients:;", "資料送付": "undisclosed-recipients:;",
		"内部連絡": "x@city.example.jp, y@kikaku.city.example.jp", "試行": twoOut,
		"一斉送信": twoOut, "不達通知": twoOut,
	} {
		if got := normalizeValue(field(header(t, originals[subject].Data), "To")); got != wantTo {
			t.Errorf("%s: To %q, want %q", subject, got, wantTo)
		}
	}
	log := d.log.String()
	if strings.Count(log, "notice=queued") != 3 || strings.Count(log, "notice=suppressed") != 1 || strings.Count(log, "msg=notice ") != 3 {
		t.Errorf("audit records:\n%s", log)
	}
	for series, want := range map[string]float64{
		`bccguard_notices_total{result="sent"}`:       3,
		`bccguard_notices_total{result="suppressed"}`: 1,
		`bccguard_notices_total{result="failed"}`:     0,
	} {
		if got := metricValue(t, metrics, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}

	// A notice queued just before SIGTERM is still sent while stopping.
	sink.Reset()
	if err := pf.Send("staff4@city.example.jp", []string{"a@ext.example", "b@other.example"}, staffMessage("staff4@city.example.jp", "最後", twoOut)); err != nil {
		t.Fatal(err)
	}
	d.stop(t)
	got = sink.WaitFor(t, 2, 30*time.Second)
	if !isNotice(got[0]) && !isNotice(got[1]) {
		t.Fatalf("no notice after SIGTERM:\n%s", d.log)
	}
}

// TestNoticeReinjectionDown: with the reinjection service unreachable the
// original is delivered converted all the same; the notice is retried,
// then counted as failed; one still retrying at SIGTERM is logged as
// dropped within shutdown_timeout.
func TestNoticeReinjectionDown(t *testing.T) {
	closed := freeaddr.Loopback(t)
	sink, d, pf, metrics := noticeSetup(t, strings.Replace(noticeConfig, "shutdown_timeout: 5s", "shutdown_timeout: 2s", 1), closed)
	if err := pf.Send("staff1@city.example.jp", []string{"a@ext.example", "b@other.example"}, staffMessage("staff1@city.example.jp", "会議", "a@ext.example, b@other.example")); err != nil {
		t.Fatalf("send: %v\n%s", err, d.log)
	}
	// Accepted while its notice still retries (for about 15 s): the
	// original did not wait for it.
	if n := metricValue(t, metrics, `bccguard_notices_total{result="failed"}`); n != 0 {
		t.Errorf("the notice had failed before the original was accepted: the original waited for it\n%s", d.log)
	}
	got := sink.WaitFor(t, 1, 30*time.Second)
	if to := field(header(t, got[0].Data), "To"); to != "undisclosed-recipients:;" || !slices.Equal(sorted(got[0].Rcpts), []string{"a@ext.example", "b@other.example"}) {
		t.Fatalf("original: To %q, rcpts %q", to, got[0].Rcpts)
	}
	deadline := time.Now().Add(40 * time.Second)
	for metricValue(t, metrics, `bccguard_notices_total{result="failed"}`) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the failed notice is not counted:\n%s", d.log)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !regexp.MustCompile(`level=WARN msg=notice queue_id=\S+ result=failed kind=converted copies=1 attempts=4 error=".*connection refused`).MatchString(d.log.String()) {
		t.Errorf("no failed notice record:\n%s", d.log)
	}

	// Another notice is retrying when SIGTERM comes: dropped, logged.
	if err := pf.Send("staff2@city.example.jp", []string{"a@ext.example", "b@other.example"}, staffMessage("staff2@city.example.jp", "資料", "a@ext.example, b@other.example")); err != nil {
		t.Fatal(err)
	}
	sink.WaitFor(t, 2, 30*time.Second)
	// Stopped within shutdown_timeout: the notice is dropped, where one
	// left to run would end failed after its retries.
	d.stop(t)
	if !strings.Contains(d.log.String(), "result=dropped") {
		t.Errorf("the queued notice is not logged as dropped:\n%s", d.log)
	}
	if n := len(sink.Deliveries()); n != 2 {
		t.Errorf("%d deliveries, want the 2 originals", n)
	}
}

// TestNoticeReinjectionHangs: a reinjection service that accepts the
// connection and never answers holds up no original; notices still waiting
// at SIGTERM are dropped within shutdown_timeout and logged.
func TestNoticeReinjectionHangs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// closedByBccguard counts the notice connections bccguard gave up on
	// (its read of the silent service timed out, 30 s by default).
	var closedByBccguard atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent, until the test ends
			go func() {
				if _, err := c.Read(make([]byte, 1)); err == io.EOF {
					closedByBccguard.Add(1)
				}
			}()
		}
	}()
	sink, d, pf, _ := noticeSetup(t, strings.Replace(noticeConfig, "shutdown_timeout: 5s", "shutdown_timeout: 2s", 1), ln.Addr().String())
	senders := []string{"staff1@city.example.jp", "staff2@city.example.jp", "staff3@city.example.jp"}
	for _, s := range senders {
		if err := pf.Send(s, []string{"a@ext.example", "b@other.example"}, staffMessage(s, "会議", "a@ext.example, b@other.example")); err != nil {
			t.Fatalf("send: %v\n%s", err, d.log)
		}
		// An original that waited for its notice would be accepted only
		// after bccguard gave up on the silent service (its 30 s timeout,
		// inside Postfix's 60 s milter timeout).
		if n := closedByBccguard.Load(); n != 0 {
			t.Errorf("the original from %s was accepted after %d notice connections were given up: it waited", s, n)
		}
	}
	got := sink.WaitFor(t, len(senders), 30*time.Second)
	for _, dl := range got {
		if isNotice(dl) || field(header(t, dl.Data), "To") != "undisclosed-recipients:;" {
			t.Errorf("unexpected delivery:\n%s", dl.Data)
		}
	}
	// Stopped within shutdown_timeout: the notices are dropped, where
	// ones left to run would wait out the 30 s reinjection timeout.
	d.stop(t)
	if n := strings.Count(d.log.String(), "result=dropped"); n != len(senders) {
		t.Errorf("%d notices logged as dropped, want %d:\n%s", n, len(senders), d.log)
	}
}

// TestNoticeAfterSplit: under delivery: split the notice says that each
// recipient got a copy showing only them, and arrives like any other.
func TestNoticeAfterSplit(t *testing.T) {
	cfg := strings.Replace(noticeConfig, "domains:\n", "split:\n  state_dir: "+t.TempDir()+"\ndomains:\n  - domain: split.city.example.jp\n    delivery: split\n", 1)
	sink, d, pf, metrics := noticeSetup(t, cfg, "")
	from := "staff5@split.city.example.jp"
	rcpts := []string{"a@ext.example", "b@other.example"}
	if err := pf.Send(from, rcpts, staffMessage(from, "個別", "a@ext.example, b@other.example")); err != nil {
		t.Fatalf("send: %v\n%s", err, d.log)
	}
	// One copy per recipient (the original, left with nobody, is
	// discarded) and the notice.
	got := sink.WaitFor(t, 3, 30*time.Second)
	time.Sleep(2 * time.Second)
	got = sink.Deliveries()
	var notices, copies []postfixtest.Delivery
	for _, dl := range got {
		if isNotice(dl) {
			notices = append(notices, dl)
		} else {
			copies = append(copies, dl)
		}
	}
	if len(notices) != 1 || len(copies) != 2 {
		t.Fatalf("%d notices and %d copies, want 1 and 2%s", len(notices), len(copies), d.log)
	}
	n := notices[0]
	if n.From != "" || !slices.Equal(sorted(n.Rcpts), []string{"security@city.example.jp", from}) {
		t.Errorf("notice envelope <%s> %q", n.From, n.Rcpts)
	}
	mr, err := mail.CreateReader(bytes.NewReader(n.Data))
	if err != nil {
		t.Fatal(err)
	}
	p, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(p.Body)
	for _, want := range []string{"その方のアドレスだけを宛先に表示したメールを 1 通ずつ送りました", "Each recipient received a copy that shows only their own address"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("the notice does not say %q:\n%s", want, body)
		}
	}
	if v := metricValue(t, metrics, `bccguard_notices_total{result="sent"}`); v != 1 {
		t.Errorf("sent = %v", v)
	}
}
