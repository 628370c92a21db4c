// Package miltertest plays Postfix's side of the milter protocol in tests,
// with go-milter's client, against a real listener.
package miltertest

import (
	"encoding/binary"
	"strings"
	"testing"

	gomilter "github.com/d--j/go-milter"
)

// Session is one milter connection, as Postfix opens for one SMTP session.
type Session struct {
	*gomilter.ClientSession
	macros *gomilter.MacroBag
	opened bool
}

// Dial opens a session to the milter at network/address ("tcp" or
// "unix"), offering every action and protocol option Postfix 3.7 offers.
func Dial(t testing.TB, network, address string) *Session {
	t.Helper()
	c := gomilter.NewClient(network, address, gomilter.WithActions(gomilter.AllClientSupportedActionMasks))
	macros := gomilter.NewMacroBag()
	s, err := c.Session(macros)
	if err != nil {
		t.Fatalf("miltertest: dial %s %s: %v", network, address, err)
	}
	t.Cleanup(func() { s.Close() })
	return &Session{ClientSession: s, macros: macros}
}

// Message is one transaction. Addresses are given without angle brackets:
// the client adds them, as Postfix does.
type Message struct {
	Sender, QueueID string
	// Rcpts default to one external address: Postfix always has one.
	Rcpts []string
	// Header fields in order: name, value.
	Header [][2]string
}

// Begin sends everything up to and including the header fields, leaving
// the transaction open (for tests of shutdown with a session in flight).
func (s *Session) Begin(m Message) error {
	if !s.opened {
		if _, err := s.Conn("client.example", gomilter.FamilyInet, 25, "192.0.2.1"); err != nil {
			return err
		}
		if _, err := s.Helo("client.example"); err != nil {
			return err
		}
		s.opened = true
	}
	if _, err := s.Mail(m.Sender, ""); err != nil {
		return err
	}
	rcpts := m.Rcpts
	if len(rcpts) == 0 {
		rcpts = []string{"someone@ext.example"}
	}
	for _, r := range rcpts {
		if _, err := s.Rcpt(r, ""); err != nil {
			return err
		}
	}
	if _, err := s.DataStart(); err != nil {
		return err
	}
	for _, h := range m.Header {
		if _, err := s.HeaderField(h[0], h[1], nil); err != nil {
			return err
		}
	}
	_, err := s.HeaderEnd()
	s.macros.Set(gomilter.MacroQueueId, m.QueueID)
	return err
}

// Finish sends the body (unless negotiated away) and end-of-message, and
// returns the modifications and the final action.
func (s *Session) Finish() ([]gomilter.ModifyAction, *gomilter.Action, error) {
	return s.BodyReadFrom(strings.NewReader("body\r\n"))
}

// Send runs one whole transaction and fails the test on a protocol error.
func (s *Session) Send(t testing.TB, m Message) ([]gomilter.ModifyAction, *gomilter.Action) {
	t.Helper()
	if err := s.Begin(m); err != nil {
		t.Fatalf("miltertest: %v", err)
	}
	mods, act, err := s.Finish()
	if err != nil {
		t.Fatalf("miltertest: end of message: %v", err)
	}
	return mods, act
}

// ToValue returns the To value the modifications leave in a message with
// one To field, and whether they changed it.
func ToValue(mods []gomilter.ModifyAction) (string, bool) {
	for _, m := range mods {
		if m.Type == gomilter.ActionChangeHeader && strings.EqualFold(m.HeaderName, "To") && m.HeaderIndex == 1 {
			return m.HeaderValue, true
		}
	}
	return "", false
}

// RawNegotiation is the negotiation packet Postfix 3.7 sends (version 6,
// every action and protocol option), for tests that speak the protocol
// byte by byte, as a hostile local client would.
func RawNegotiation() []byte {
	neg := binary.BigEndian.AppendUint32(nil, 6)
	neg = binary.BigEndian.AppendUint32(neg, 0x1ff)
	neg = binary.BigEndian.AppendUint32(neg, 0x1fffff)
	return append(append(binary.BigEndian.AppendUint32(nil, uint32(len(neg)+1)), 'O'), neg...)
}
