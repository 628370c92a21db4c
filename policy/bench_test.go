package policy

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
)

// benchHeader is a realistic header with n To addresses: the first
// internal, the rest external, folded as mail clients fold them.
func benchHeader(n int) []Field {
	var to strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			to.WriteString(",\r\n ")
		}
		if i == 0 {
			to.WriteString("Yamada Taro <yamada@city.example.jp>")
			continue
		}
		fmt.Fprintf(&to, "\"Partner %d\" <user%d@ext%d.example>", i, i, i%7)
	}
	return []Field{
		{"From", "Yamada Taro <yamada@city.example.jp>"},
		{"To", to.String()},
		{"Cc", "kikaku@city.example.jp"},
	}
}

// cpuTime is the CPU time the process has used, in nanoseconds, garbage
// collection included. On a shared machine it varies much less than
// ns/op, which counts the time other processes hold the CPU too.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func BenchmarkDecide(b *testing.B) {
	cfg := &Config{Internal: DomainSet{{Domain: "city.example.jp"}, {Domain: "city.example.jp", Subdomains: true}}, Default: DefaultSettings()}
	for _, n := range []int{3, 50, 500} {
		h := benchHeader(n)
		b.Run(fmt.Sprintf("to=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			start := cpuTime()
			for b.Loop() {
				d := Decide(cfg, Message{Sender: "yamada@city.example.jp", Header: h})
				if d.Action != Convert {
					b.Fatal(d.Reason)
				}
			}
			b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkHostileQuotes reads To fields of never-closed quoted strings
// and of unbalanced comments, at two sizes: the time per byte must stay
// flat (linear), as ns/op of the larger is four times the smaller.
func BenchmarkHostileQuotes(b *testing.B) {
	for _, shape := range []struct{ name, unit string }{
		{"quotes", `"\`}, {"comments", "(@"}, {"encoded", "=?a?b?"}, {"ats", "a @"},
		{"no-break-spaces", "a@b\u00a0"}, {"full-width-ats", "b＠x.example "}, {"named", `"'a@b.example'" `},
	} {
		for _, size := range []int{64 << 10, 256 << 10} {
			v := "a@ext.example, " + strings.Repeat(shape.unit, size/len(shape.unit))
			b.Run(fmt.Sprintf("%s/%dKiB", shape.name, size>>10), func(b *testing.B) {
				b.SetBytes(int64(len(v)))
				for b.Loop() {
					ParseAddressField(v)
				}
			})
		}
	}
}

// BenchmarkFallbackEncodedNames reads a field on the fallback path (one
// entry is broken) whose 64 display names are ISO-2022-JP encoded-words,
// the usual Japanese names, and one that hides an address: converting a
// charset costs far more than reading the field, so only the words that
// may hide an address are converted, once.
func BenchmarkFallbackEncodedNames(b *testing.B) {
	var v strings.Builder
	v.WriteString("<<broken, =?ISO-2022-JP?B?GyRCOzNFRBsoQiBiQGV4dDIuZXhhbXBsZS5vcmc=?= <a@city.example.jp>")
	for i := 0; i < 64; i++ {
		fmt.Fprintf(&v, ",\r\n =?ISO-2022-JP?B?GyRCOzNFRCRAGyhC?= <user%d@ext%d.example>", i, i%7)
	}
	s := v.String()
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		if pa := ParseAddressField(s); len(pa.Addrs) != 66 {
			b.Fatal(len(pa.Addrs))
		}
	}
}

// BenchmarkEncodedNames: a To of 50 ISO-2022-JP names on the fast path, the
// usual Japanese mail: the encoded-words are looked into, not converted.
func BenchmarkEncodedNames(b *testing.B) {
	benchmarkNames(b, "=?ISO-2022-JP?B?GyRCOzNFRCRAGyhC?= <user%d@ext%d.example>")
}

// BenchmarkEncodedNamesFolded is BenchmarkEncodedNames with each name in
// two adjacent encoded-words over a fold, as clients write long names: a
// run of words is looked into as one, not converted.
func BenchmarkEncodedNamesFolded(b *testing.B) {
	benchmarkNames(b, "=?ISO-2022-JP?B?GyRCOzNFRBsoQg==?=\r\n =?ISO-2022-JP?B?GyRCQkBPOiRAGyhC?= <user%d@ext%d.example>")
}

// benchmarkNames reads a To of 50 named addresses made by format (with the
// address's number twice), which must stay on the strict path.
func benchmarkNames(b *testing.B, format string) {
	var v strings.Builder
	for i := 0; i < 50; i++ {
		if i > 0 {
			v.WriteString(",\r\n ")
		}
		fmt.Fprintf(&v, format, i, i%7)
	}
	s := v.String()
	start := cpuTime()
	for b.Loop() {
		if pa := ParseAddressField(s); len(pa.Addrs) != 50 || pa.Mode != ParsedStrict {
			b.Fatal(len(pa.Addrs), pa.Mode)
		}
	}
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}
