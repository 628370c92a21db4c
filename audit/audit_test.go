package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/bccguard/bccguard/policy"
)

func TestLevels(t *testing.T) {
	for _, tc := range []struct {
		d    policy.Decision
		want string
	}{
		{policy.Decision{Action: policy.Convert}, "level=INFO"},
		{policy.Decision{Action: policy.Tempfail}, "level=INFO"},
		{policy.Decision{Action: policy.Pass}, "level=DEBUG"},
		{policy.Decision{Action: policy.Pass, Parse: policy.ParseUnreadable}, "level=WARN"},
		{policy.Decision{Action: policy.Convert, Parse: policy.ParseTooLarge}, "level=WARN"},
		{policy.Decision{Action: policy.Pass, Parse: policy.ParseLenient}, "level=DEBUG"},
	} {
		var b bytes.Buffer
		log := slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug}))
		Log(context.Background(), log, Options{Mode: ModeDomain}, Record{QueueID: "Q", Decision: tc.d})
		if !strings.Contains(b.String(), tc.want) {
			t.Errorf("%v/%q: %s", tc.d.Action, tc.d.Parse, b.String())
		}
	}
}

// TestMessageIDOnlyWholeInFull: the Message-ID's "@" and right-hand side
// appear only with recipients: full; every other mode logs the part
// before the "@", so the log holds no "@" by default.
func TestMessageIDOnlyWholeInFull(t *testing.T) {
	for _, tc := range []struct {
		mode Mode
		id   string
		want string
	}{
		{ModeFull, "<20260101.abc@city.example.jp>", "message_id=<20260101.abc@city.example.jp>"},
		{ModeDomain, "<20260101.abc@city.example.jp>", "message_id=20260101.abc "},
		{ModeNone, " <20260101.abc@city.example.jp>", "message_id=20260101.abc "},
		{ModeHash, "<staff@city.example.jp@host>", "message_id=staff "},
		{ModeNone, "<no-at-sign>", "message_id=no-at-sign "},
		{ModeNone, "", "queue_id=Q action="},
	} {
		var b bytes.Buffer
		log := slog.New(slog.NewTextHandler(&b, nil))
		Log(context.Background(), log, Options{Mode: tc.mode, HashKey: []byte("0123456789abcdef")},
			Record{QueueID: "Q", MessageID: tc.id, Decision: policy.Decision{Action: policy.Convert}})
		if !strings.Contains(b.String(), tc.want) || tc.mode != ModeFull && strings.Contains(b.String(), "@") {
			t.Errorf("%s %q: %s", tc.mode, tc.id, b.String())
		}
	}
}

func TestHashIsKeyedAndCaseInsensitive(t *testing.T) {
	a := HashAddress([]byte("0123456789abcdef"), "Alice@Ext.example")
	if a != HashAddress([]byte("0123456789abcdef"), "alice@ext.example") {
		t.Error("case changes the hash")
	}
	if a == HashAddress([]byte("fedcba9876543210"), "alice@ext.example") {
		t.Error("the key does not change the hash")
	}
	if strings.Contains(a, "alice") || !strings.HasPrefix(a, "hmac:") {
		t.Errorf("hash %q", a)
	}
}

func TestLongListsAreCut(t *testing.T) {
	var as []policy.Address
	for i := 0; i < 500; i++ {
		as = append(as, policy.Address{Addr: fmt.Sprintf("u%d@d%d.example", i, i), Domain: fmt.Sprintf("d%d.example", i)})
	}
	got := Options{Mode: ModeDomain}.addresses(as)
	if len(got) != maxListed+1 || got[maxListed] != "+480 more addresses" {
		t.Fatalf("%d entries, last %q", len(got), got[len(got)-1])
	}
}

func TestLogNotice(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	rec := NoticeRecord{QueueID: "4ABC", Sender: "staff@city.example.jp", Kind: "converted", Result: "failed", Copies: 1, Attempts: 4,
		Err: errors.New("reinject: RCPT TO:<chief@city.example.jp>: 550 5.1.1 <chief@city.example.jp>: unknown; <not an address>")}
	LogNotice(context.Background(), log, Options{Mode: ModeDomain}, rec)
	got := buf.String()
	if strings.Contains(got, "@") || !strings.Contains(got, "level=WARN msg=notice queue_id=4ABC result=failed kind=converted copies=1 attempts=4") ||
		!strings.Contains(got, "RCPT TO:<redacted>: 550 5.1.1 <redacted>: unknown; <not an address>") {
		t.Fatalf("log: %s", got)
	}
	buf.Reset()
	rec.Result, rec.Err = "sent", nil
	LogNotice(context.Background(), log, Options{Mode: ModeFull}, rec)
	if got := buf.String(); !strings.Contains(got, "level=INFO msg=notice queue_id=4ABC result=sent kind=converted sender=staff@city.example.jp") {
		t.Fatalf("log: %s", got)
	}
}
