// Command splitload drives the split benchmark (deploy/bench/split.sh): it
// sends messages, each to many outside To recipients, to a Postfix whose
// milter is bccguard with delivery: split, from several concurrent SMTP
// sessions, and prints how long it took until Postfix had accepted them
// all. bccguard answers end-of-message only after every copy was handed
// back, so copies/s = messages × recipients / seconds. Every message has
// its own Message-ID: identical messages would be taken for retries. It is
// a benchmark tool only, not part of bccguard.
//
//	splitload -addr 127.0.0.1:25 -messages 40 -rcpts 50 -sessions 4 -body 2048
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:25", "Postfix smtpd HOST:PORT (with bccguard)")
	messages := flag.Int("messages", 40, "messages to send")
	rcpts := flag.Int("rcpts", 50, "outside To recipients per message")
	sessions := flag.Int("sessions", 4, "concurrent SMTP sessions")
	body := flag.Int("body", 2048, "body bytes")
	tag := flag.String("tag", "run", "part of every Message-ID, unique per run")
	flag.Parse()

	line := "The quick brown fox jumps over the lazy dog. Body text.\r\n"
	text := strings.Repeat(line, max(1, *body/len(line)))
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range *sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := smtp.Dial(*addr)
			if err != nil {
				fmt.Fprintln(os.Stderr, "splitload:", err)
				failed.Add(1)
				return
			}
			defer c.Close()
			c.Hello("splitload.example")
			for {
				i := int(next.Add(1)) - 1
				if i >= *messages {
					break
				}
				to := make([]string, *rcpts)
				for k := range to {
					to[k] = fmt.Sprintf("r%d@ext%d.example", k, k%5)
				}
				msg := fmt.Sprintf("From: Staff <staff@city.example.jp>\r\nTo: %s\r\nSubject: split benchmark %d\r\n"+
					"Date: Tue, 04 Mar 2025 10:15:00 +0900\r\nMessage-ID: <%s.%d@city.example.jp>\r\nMIME-Version: 1.0\r\n"+
					"Content-Type: text/plain; charset=UTF-8\r\n\r\n%s", strings.Join(to, ",\r\n "), i, *tag, i, text)
				if err := c.SendMail("staff@city.example.jp", to, bytes.NewReader([]byte(msg))); err != nil {
					fmt.Fprintf(os.Stderr, "splitload: message %d: %v\n", i, err)
					failed.Add(1)
				}
			}
			c.Quit()
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	fmt.Printf("%.3f %d\n", el, failed.Load())
	if failed.Load() > 0 {
		os.Exit(1)
	}
}
