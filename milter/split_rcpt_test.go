package milter

import (
	"fmt"
	"strings"
	"testing"

	gomilter "github.com/d--j/go-milter"

	"github.com/bccguard/bccguard/internal/miltertest"
	"github.com/bccguard/bccguard/internal/postfixtest"
)

// TestSplitTooManyRecipientsHides: a message with more recipients than a
// split session keeps (by count or by bytes) is hidden, never split. The
// recipients kept would all have copies of their own, so a split of them
// would discard the original, and the Bcc recipient sent last with it.
func TestSplitTooManyRecipientsHides(t *testing.T) {
	sink := postfixtest.StartSink(t)
	addr, p, srv := startServer(t, cityPolicy(t, nil))
	p.Store(splitSnapshot(t, sink.Addr()))
	bigArgs := "ORCPT=rfc822;" + strings.Repeat("x", 1000<<10)
	for _, tc := range []struct {
		name  string
		rcpts int
		args  string
	}{
		{"count", maxSplitRcpts, ""},
		{"bytes", maxSplitRcptBytes/len(bigArgs) + 1, bigArgs},
	} {
		s := miltertest.Dial(t, "tcp", addr)
		if _, err := s.Conn("client.example", gomilter.FamilyInet, 25, "192.0.2.1"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Helo("client.example"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Mail("staff@city.example.jp", ""); err != nil {
			t.Fatal(err)
		}
		// a and b over and over, then the Bcc recipient.
		for i := range tc.rcpts {
			if _, err := s.Rcpt([]string{"a@ext.example", "b@ext.example"}[i%2], tc.args); err != nil {
				t.Fatalf("%s: rcpt %d: %v", tc.name, i, err)
			}
		}
		if _, err := s.Rcpt("bcc@ext.example", ""); err != nil {
			t.Fatal(err)
		}
		if _, err := s.DataStart(); err != nil {
			t.Fatal(err)
		}
		for _, h := range [][2]string{{"To", "a@ext.example, b@ext.example"}, {"Message-ID", fmt.Sprintf("<%s@city.example.jp>", tc.name)}} {
			if _, err := s.HeaderField(h[0], h[1], nil); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.HeaderEnd(); err != nil {
			t.Fatal(err)
		}
		mods, act, err := s.Finish()
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(modStrings(mods), "\n")
		if act.Type != gomilter.ActionAccept || strings.Contains(got, "DelRcpt") || !strings.Contains(got, `"To" "undisclosed-recipients:;"`) {
			t.Errorf("%s: action %v, mods %s", tc.name, act, got)
		}
	}
	if got := copies(sink); len(got) != 0 {
		t.Errorf("copies of a message with too many recipients: %v", got)
	}
	if m := scrape(t, srv); !strings.Contains(m, `bccguard_split_fallbacks_total{reason="recipients"} 2`+"\n") {
		t.Errorf("fallbacks not counted:\n%s", m)
	}
}
