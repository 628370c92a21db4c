package milter

import (
	"fmt"
	"strings"
	"testing"

	"github.com/bccguard/bccguard/internal/miltertest"
)

// BenchmarkServer measures a whole transaction through the real server and
// go-milter's client over loopback TCP, for 3 and 500 To addresses.
func BenchmarkServer(b *testing.B) {
	for _, n := range []int{3, 500} {
		addrs := make([]string, n)
		for i := range addrs {
			addrs[i] = fmt.Sprintf("user%d@ext%d.example", i, i)
		}
		addrs[0] = "user0@city.example.jp"
		msg := miltertest.Message{Sender: "staff@city.example.jp", QueueID: "Q",
			Header: [][2]string{{"From", "staff@city.example.jp"}, {"To", strings.Join(addrs, ",\n ")}, {"Subject", "x"}}}
		b.Run(fmt.Sprintf("to=%d", n), func(b *testing.B) {
			addr, _, _ := startServer(&testing.T{}, cityPolicy(&testing.T{}, nil))
			s := miltertest.Dial(b, "tcp", addr)
			b.ReportAllocs()
			for b.Loop() {
				if _, changed := miltertest.ToValue(must(s.Send(b, msg))); !changed {
					b.Fatal("not converted")
				}
			}
		})
	}
}
