package doctor

import (
	"net"
	"reflect"
	"strings"
	"testing"
)

func TestParseMilters(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []milterEntry
	}{
		{"", nil},
		{"inet:127.0.0.1:10030", []milterEntry{{Addr: "inet:127.0.0.1:10030"}}},
		{"inet:127.0.0.1:10030, unix:/a.sock\tinet:[::1]:8891", []milterEntry{
			{Addr: "inet:127.0.0.1:10030"}, {Addr: "unix:/a.sock"}, {Addr: "inet:[::1]:8891"}}},
		{"{ inet:127.0.0.1:8891, default_action=accept, protocol = 6 }, inet:127.0.0.1:10030", []milterEntry{
			{Addr: "inet:127.0.0.1:8891", Attrs: map[string]string{"default_action": "accept", "protocol": "6"}},
			{Addr: "inet:127.0.0.1:10030"}}},
		{"{inet:127.0.0.1:10030", []milterEntry{{Addr: "inet:127.0.0.1:10030", Attrs: map[string]string{}}}},
	} {
		if got := parseMilters(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseMilters(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestSameEndpoint(t *testing.T) {
	pf := &Postfix{Main: map[string]string{"queue_directory": "/var/spool/postfix"}}
	listen := func(s string) endpoint {
		e, err := listenEndpoint(s)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	for _, tc := range []struct {
		postfix  string
		chrooted bool
		listen   string
		same     bool
	}{
		{"inet:127.0.0.1:10030", false, "inet:127.0.0.1:10030", true},
		{"inet:localhost:10030", false, "inet:127.0.0.1:10030", true},
		{"inet:127.0.0.1:10030", false, "inet:0.0.0.0:10030", true},
		{"inet:127.0.0.1:10031", false, "inet:127.0.0.1:10030", false},
		// Listening on every address is not listening on another host.
		{"inet:198.51.100.7:10030", false, "inet:0.0.0.0:10030", false},
		{"inet:198.51.100.7:10030", false, "inet:[::]:10030", false},
		{"inet:[::1]:10030", false, "inet:[::]:10030", true},
		{"inet:localhost:10030", false, "inet:0.0.0.0:10030", true},
		{"inet:192.0.2.1:10030", false, "inet:127.0.0.1:10030", false},
		{"unix:/bccguard/x.sock", true, "unix:/var/spool/postfix/bccguard/x.sock", true},
		{"unix:/bccguard/x.sock", false, "unix:/var/spool/postfix/bccguard/x.sock", false},
		{"unix:bccguard/x.sock", false, "unix:/var/spool/postfix/bccguard/x.sock", true},
		{"local:/run/x.sock", false, "unix:/run/x.sock", true},
		{"unix:/run/x.sock", true, "unix:/run/x.sock", false},
		{"unix:/run/x.sock", false, "inet:127.0.0.1:10030", false},
	} {
		ep, ok := pf.postfixEndpoint(tc.postfix, tc.chrooted)
		if got := ok && ep.same(listen(tc.listen)); got != tc.same {
			t.Errorf("%s (chrooted %v) vs %s: same %v, want %v", tc.postfix, tc.chrooted, tc.listen, got, tc.same)
		}
	}
}

// An address of this machine reaches a daemon listening on 0.0.0.0.
func TestSameEndpointOwnAddress(t *testing.T) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var own net.IP
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			own = n.IP
		}
	}
	if own == nil {
		t.Fatal("this machine has no non-loopback IPv4 address to test with")
	}
	l, err := listenEndpoint("inet:0.0.0.0:10030")
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := listenEndpoint("inet:" + own.String() + ":10030"); !e.same(l) {
		t.Errorf("%s does not reach 0.0.0.0", own)
	}
}

func TestSplitServiceKey(t *testing.T) {
	name, typ, field, ok := splitServiceKey("127.0.0.1:10025/inet/smtpd_milters")
	if !ok || name != "127.0.0.1:10025" || typ != "inet" || field != "smtpd_milters" {
		t.Fatalf("%q %q %q %v", name, typ, field, ok)
	}
	if _, _, _, ok := splitServiceKey("smtp/inet"); ok {
		t.Fatal("two parts accepted")
	}
}

func TestBuildInfoVersion(t *testing.T) {
	page := "# HELP bccguard_build_info Build.\n# TYPE bccguard_build_info gauge\n" +
		`bccguard_build_info{goversion="go1.26.8",version="bccguard 1.2.0 \"x\\y\" go1.26.8 linux/amd64"} 1` + "\n" +
		"# TYPE other gauge\nother 2\n"
	got, err := buildInfoVersion(strings.NewReader(page))
	if err != nil || got != `bccguard 1.2.0 "x\y" go1.26.8 linux/amd64` {
		t.Fatalf("%q, %v", got, err)
	}
	if _, err := buildInfoVersion(strings.NewReader("other 2\n")); err == nil {
		t.Fatal("no error without bccguard_build_info")
	}
	if _, err := buildInfoVersion(strings.NewReader("<html>not metrics</html>\n")); err == nil {
		t.Fatal("no error on a page that is not metrics")
	}
}
