package main

import (
	"mime"
	"net/mail"
	"strings"
	"testing"
)

func TestNoticePreview(t *testing.T) {
	cfg := writeConfig(t, `
internal_domains: [city.example.jp]
reinject:
  address: inet:127.0.0.1:10026
policy:
  notify_sender: true
  notify_copy_to: [security@city.example.jp]
notice:
  from: postmaster@city.example.jp
`)
	code, out, errOut := runCmd(t, twoExternal, "notice", "preview", "--config", cfg, "-")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	m, err := mail.ReadMessage(strings.NewReader(out))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if err != nil || subject != "【bccguard】宛先を非表示にして送信しました: test" {
		t.Errorf("subject %q (%v)", subject, err)
	}
	if m.Header.Get("To") != "<staff@city.example.jp>" || m.Header.Get("X-BCCGuard-Notice") != "converted" {
		t.Errorf("header:\n%s", out)
	}
	if !strings.Contains(errOut, "RCPT TO:<staff@city.example.jp> <security@city.example.jp> via reinject.address inet:127.0.0.1:10026") {
		t.Errorf("envelope note missing: %s", errOut)
	}
	if strings.Contains(errOut, "notify_sender: false") {
		t.Errorf("unexpected note: %s", errOut)
	}
}

func TestNoticePreviewBeforeSwitchingOn(t *testing.T) {
	cfg := writeConfig(t, "internal_domains: [city.example.jp]\npolicy:\n  dry_run: true\n")
	code, out, errOut := runCmd(t, twoExternal, "notice", "preview", "--config", cfg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "X-BCCGuard-Notice: dry-run") || !strings.Contains(out, "From: <postmaster@city.example.jp>") {
		t.Errorf("dry-run preview:\n%s", out)
	}
	for _, want := range []string{"notify_sender: false", "notice.from is not set", "(not set)"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("notes lack %q: %s", want, errOut)
		}
	}
	// A message that passes has no notice.
	code, _, errOut = runCmd(t, "From: staff@city.example.jp\r\nTo: a@ext.example\r\n\r\n", "notice", "preview", "--config", cfg)
	if code != 1 || !strings.Contains(errOut, "no notice: the message would not be converted") {
		t.Errorf("pass: exit %d, %s", code, errOut)
	}
	if code, _, _ := runCmd(t, "", "notice"); code != 2 {
		t.Errorf("notice without a subcommand: exit %d", code)
	}
}
