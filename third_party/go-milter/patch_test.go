package milter

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/d--j/go-milter/internal/wire"
)

// Tests of the bccguard patch (see PATCHES.md).

type panicMilter struct{ NoOpMilter }

func (panicMilter) MailFrom(string, string, Modifier) (*Response, error) { panic("boom") }

// A panic in a backend ends that session with SMFIR_TEMPFAIL, not the
// process; the server goes on serving.
func TestServer_PanicEndsOnlyTheSession(t *testing.T) {
	macros := NewMacroBag()
	w := newServerClient(t, macros, []Option{WithMilter(func() Milter { return panicMilter{} })}, nil)
	t.Cleanup(w.Cleanup)
	if _, err := w.session.Conn("localhost", FamilyInet, 2525, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.session.Helo("localhost"); err != nil {
		t.Fatal(err)
	}
	act, err := w.session.Mail("a@example.com", "")
	if err != nil || act == nil || act.Type != ActionTempFail {
		t.Fatalf("after a panic: %+v %v, want tempfail", act, err)
	}
	if _, err := w.session.Rcpt("b@example.com", ""); err == nil {
		t.Fatal("session still open after a panic")
	}
}

// WithPanicHandler receives the panic and the peer instead of the log.
func TestServer_PanicHandler(t *testing.T) {
	got := make(chan string, 1)
	macros := NewMacroBag()
	w := newServerClient(t, macros, []Option{
		WithMilter(func() Milter { return panicMilter{} }),
		WithPanicHandler(func(peer string, r any, _ []byte) { got <- peer + " " + r.(string) }),
	}, nil)
	t.Cleanup(w.Cleanup)
	w.session.Conn("localhost", FamilyInet, 2525, "127.0.0.1")
	w.session.Helo("localhost")
	w.session.Mail("a@example.com", "")
	select {
	case s := <-got:
		if !strings.HasPrefix(s, "tcp:127.0.0.1:") || !strings.HasSuffix(s, " boom") {
			t.Fatalf("handler got %q", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("panic handler not called")
	}
}

// Macro packets are bounded: Postfix sends a handful of short macros.
func TestServer_MacroLimits(t *testing.T) {
	s := &serverSession{macros: newMacroStages()}
	small := &wire.Message{Code: wire.CodeMacro, Data: []byte("Mi\x00ABC\x00")}
	if _, err := s.processMsg(NoOpMilter{}, small); err != nil {
		t.Fatalf("small macro packet: %v", err)
	}
	many := &wire.Message{Code: wire.CodeMacro, Data: append([]byte("M"), bytes.Repeat([]byte("a\x00b\x00"), maxMacroPairs+1)...)}
	if _, err := s.processMsg(NoOpMilter{}, many); err == nil {
		t.Fatal("too many macros accepted")
	}
	large := &wire.Message{Code: wire.CodeMacro, Data: append([]byte("Mi\x00"), bytes.Repeat([]byte("x"), maxMacroData)...)}
	if _, err := s.processMsg(NoOpMilter{}, large); err == nil {
		t.Fatal("oversized macro packet accepted")
	}
	unknown := &wire.Message{Code: wire.CodeMacro, Data: []byte("Zi\x00ABC\x00")}
	if _, err := s.processMsg(NoOpMilter{}, unknown); err == nil {
		t.Fatal("macro for an unknown command kept the session")
	}
}

// MAIL and RCPT packets carry a bounded number of ESMTP arguments: a
// packet of NULs is refused before it is split into strings.
func TestServer_ESMTPArgLimits(t *testing.T) {
	for _, code := range []wire.Code{wire.CodeMail, wire.CodeRcpt} {
		s := &serverSession{macros: newMacroStages()}
		s.modifier = newModifier(s, modifierStateReadOnly)
		few := &wire.Message{Code: code, Data: []byte("<a@example.com>\x00SIZE=10\x00BODY=8BITMIME\x00")}
		if _, err := s.processMsg(NoOpMilter{}, few); err != nil {
			t.Fatalf("%c with two arguments: %v", code, err)
		}
		for _, data := range [][]byte{
			append([]byte("<a@example.com>\x00"), bytes.Repeat([]byte{0}, maxESMTPArgs+1)...),
			append([]byte("<a@example.com>\x00"), make([]byte, 1<<20)...),
		} {
			if _, err := s.processMsg(NoOpMilter{}, &wire.Message{Code: code, Data: data}); err == nil {
				t.Fatalf("%c with %d NULs of arguments accepted", code, len(data)-16)
			}
		}
	}
}

func TestReadPacketMax(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"empty packet", []byte{0, 0, 0, 0}, false},
		{"over the limit", binary.BigEndian.AppendUint32(nil, 1025), false},
		{"at the limit", append(binary.BigEndian.AppendUint32(nil, 1024), make([]byte, 1024)...), true},
		{"claimed, not sent", append(binary.BigEndian.AppendUint32(nil, 1000), 'M'), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			go func() { a.Write(tt.in); a.Close() }()
			_, err := wire.ReadPacketMax(b, time.Second, 1024)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v", err)
			}
			b.Close()
		})
	}
	// Memory follows what arrives: a claimed 512 MiB with 1 byte sent
	// allocates one chunk, not the claim.
	a, b := net.Pipe()
	go func() { a.Write(append(binary.BigEndian.AppendUint32(nil, 512<<20), 'M')); a.Close() }()
	if _, err := wire.ReadPacketMax(b, time.Second, 512<<20); err != io.ErrUnexpectedEOF {
		t.Fatalf("err = %v, want unexpected EOF", err)
	}
}
