package e2e

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/bccguard/bccguard/internal/freeaddr"
	"github.com/bccguard/bccguard/internal/postfixtest"
)

// burstMessage is message i of a burst: two external To addresses and an
// internal Cc, so that a leak (To visible) is easy to see.
func burstMessage(i int) (rcpts []string, msg []byte) {
	a, b, c := fmt.Sprintf("a%d@ext.example", i), fmt.Sprintf("b%d@other.example", i), fmt.Sprintf("c%d@city.example.jp", i)
	msg = []byte(fmt.Sprintf("From: staff@city.example.jp\r\nTo: %s, %s\r\nCc: %s\r\nSubject: burst %d\r\n\r\nbody %d\r\n", a, b, c, i, i))
	return []string{a, b, c}, msg
}

// outcome counts what happened to a burst, for docs/reliability.md.
type outcome struct {
	sent, delivered, deferred, leaked, duplicated, lost int
}

func (o outcome) String() string {
	return fmt.Sprintf("sent=%d delivered=%d deferred(4xx, retried)=%d leaked=%d duplicated=%d lost=%d",
		o.sent, o.delivered, o.deferred, o.leaked, o.duplicated, o.lost)
}

// sendBurst sends n messages from workers concurrent clients. Like a real
// MTA, a client keeps a message refused with 4xx and retries it until
// deadline; during runs it calls during(k) after the k-th acceptance.
func sendBurst(t *testing.T, pf *postfixtest.Instance, n, workers int, deadline time.Time, during func(accepted int64)) (deferred int) {
	t.Helper()
	return sendBurstOf(t, pf, n, workers, deadline, burstMessage, during)
}

// sendBurstOf is sendBurst with message i made by message.
func sendBurstOf(t *testing.T, pf *postfixtest.Instance, n, workers int, deadline time.Time, message func(int) ([]string, []byte), during func(accepted int64)) (deferred int) {
	t.Helper()
	var next, accepted, tempfails atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				rcpts, msg := message(i)
				for {
					err := pf.Send("staff@city.example.jp", rcpts, msg)
					if err == nil {
						if during != nil {
							during(accepted.Add(1))
						}
						break
					}
					var se *smtp.SMTPError
					if !errors.As(err, &se) || se.Code/100 != 4 {
						// A refused connection while Postfix is busy is
						// also temporary for a real MTA.
						if !strings.Contains(err.Error(), "connection refused") && !strings.Contains(err.Error(), "EOF") {
							errs <- fmt.Errorf("message %d: %w", i, err)
							return
						}
					}
					tempfails.Add(1)
					if time.Now().After(deadline) {
						errs <- fmt.Errorf("message %d still deferred at the deadline: %w", i, err)
						return
					}
					time.Sleep(200 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	return int(tempfails.Load())
}

// checkBurst reads what the sink received for a burst of n messages.
func checkBurst(t *testing.T, sink *postfixtest.Sink, n int) outcome {
	t.Helper()
	sink.WaitFor(t, n, 5*time.Minute) // ends as soon as all have arrived
	time.Sleep(time.Second)           // let stragglers (duplicates) arrive
	ds := sink.Deliveries()
	o := outcome{sent: n}
	perRcpt := map[string]int{}
	seen := map[string]bool{}
	for _, dl := range ds {
		h := header(t, dl.Data)
		subj := field(h, "Subject")
		if !seen[subj] {
			seen[subj] = true
			o.delivered++
		}
		if to := fields(h, "To"); len(to) != 1 || to[0] != "undisclosed-recipients:;" {
			o.leaked++
			t.Errorf("%s delivered with To %q", subj, to)
		}
		for _, r := range dl.Rcpts {
			perRcpt[r]++
		}
	}
	for i := 0; i < n; i++ {
		rcpts, _ := burstMessage(i)
		for _, r := range rcpts {
			switch perRcpt[r] {
			case 0:
				o.lost++
			case 1:
			default:
				o.duplicated++
			}
		}
	}
	if o.delivered != n || o.lost != 0 || o.duplicated != 0 || o.leaked != 0 {
		t.Errorf("burst: %v", o)
	}
	return o
}

// TestKilledDuringBurst: bccguard is SIGKILLed in the middle of a burst.
// Every message is either delivered converted or refused with 4xx (and
// retried by its sender); after the restart all are delivered, each
// recipient once, none with its To visible.
func TestKilledDuringBurst(t *testing.T) {
	sink, d, pf := setup(t, cityConfig)
	const n = 60
	var once sync.Once
	again := make(chan restarted, 1)
	cfg := writeConfig(t, cityConfig)
	start := time.Now()
	deferred := sendBurst(t, pf, n, 6, time.Now().Add(90*time.Second), func(accepted int64) {
		if accepted == n/3 {
			once.Do(func() {
				d.kill(t)
				go func() {
					time.Sleep(2 * time.Second)
					next, err := launchDaemon(t, cfg, d.addr)
					again <- restarted{next, err}
				}()
			})
		}
	})
	(<-again).daemon(t)
	o := checkBurst(t, sink, n)
	o.deferred = deferred
	if deferred == 0 {
		t.Error("no message was refused while bccguard was dead: the kill did not happen mid-burst")
	}
	t.Logf("SIGKILL mid-burst: %v, %s", o, time.Since(start).Round(time.Millisecond))
}

// TestHungPastMilterTimeouts: bccguard stopped with SIGSTOP longer than
// Postfix's milter timeouts. Postfix gives up on it and refuses with 4xx;
// after SIGCONT everything is delivered converted.
func TestHungPastMilterTimeouts(t *testing.T) {
	sink := postfixtest.StartSink(t)
	d := startDaemon(t, writeConfig(t, cityConfig), freeaddr.Loopback(t))
	pf := postfixtest.Start(t, postfixtest.Options{
		Milter: "inet:" + d.addr, DefaultAction: "tempfail", RelayTo: sink.Addr(),
		Extra: map[string]string{"milter_connect_timeout": "2s", "milter_command_timeout": "2s", "milter_content_timeout": "2s"},
	})
	const n = 12
	var once sync.Once
	// The SIGCONT is sent from its own goroutine, which must not call
	// t.Fatal (that would end only the goroutine, or panic once the test
	// is over): its error comes back here.
	resumed := make(chan error, 1)
	start := time.Now()
	deferred := sendBurst(t, pf, n, 3, time.Now().Add(90*time.Second), func(accepted int64) {
		if accepted == 2 {
			once.Do(func() {
				d.signal(t, syscall.SIGSTOP)
				go func() {
					time.Sleep(7 * time.Second) // past the 2s timeouts, several times
					resumed <- d.cmd.Process.Signal(syscall.SIGCONT)
				}()
			})
		}
	})
	o := checkBurst(t, sink, n)
	select {
	case err := <-resumed:
		if err != nil {
			t.Errorf("SIGCONT: %v", err)
		}
	case <-time.After(60 * time.Second): // a hang detector; ends at the SIGCONT
		t.Error("bccguard was never stopped and continued")
	}
	o.deferred = deferred
	if deferred == 0 {
		t.Error("no message was refused while bccguard hung")
	}
	if !strings.Contains(pf.Log(), "milter") {
		t.Errorf("Postfix logged no milter trouble:\n%s", pf.Log())
	}
	t.Logf("SIGSTOP past milter timeouts: %v, %s", o, time.Since(start).Round(time.Millisecond))
}

// TestReloadStormUnderLoad: SIGHUP every 10 ms while mail flows, the file
// switching between two configs. Each delivered message shows one complete
// config: stamp header and replacement always from the same file.
func TestReloadStormUnderLoad(t *testing.T) {
	const a = cityConfig + "policy:\n  stamp_header: X-Config-A\n  replacement: undisclosed\n"
	const b = cityConfig + "policy:\n  stamp_header: X-Config-B\n  replacement: \"group:B\"\n"
	sink := postfixtest.StartSink(t)
	cfg := writeConfig(t, a)
	d := startDaemon(t, cfg, freeaddr.Loopback(t))
	pf := postfixtest.Start(t, postfixtest.Options{Milter: "inet:" + d.addr, DefaultAction: "tempfail", RelayTo: sink.Addr()})

	stop := make(chan struct{})
	var hups atomic.Int64
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			body := a
			if i%2 == 1 {
				body = b
			}
			writeFileAtomic(t, cfg, body)
			d.cmd.Process.Signal(syscall.SIGHUP)
			hups.Add(1)
		}
	}()
	// Mail flows for three seconds and until at least 100 reloads were
	// asked for, so that hundreds of reloads land in the middle of
	// sessions. (Three seconds alone give about 300 SIGHUPs, but fewer on
	// a loaded machine, where the ticker drops ticks.)
	var sent atomic.Int64
	rcptsOf := func(i int) []string { r, _ := burstMessage(i); return r }
	end, hardEnd := time.Now().Add(3*time.Second), time.Now().Add(2*time.Minute)
	flowing := func() bool {
		now := time.Now()
		return now.Before(end) || (hups.Load() < 100 && now.Before(hardEnd))
	}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for flowing() {
				i := int(sent.Add(1)) - 1
				_, msg := burstMessage(i)
				if err := pf.Send("staff@city.example.jp", rcptsOf(i), msg); err != nil {
					t.Errorf("message %d: %v", i, err)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	n := int(sent.Load())
	ds := sink.WaitFor(t, n, 60*time.Second)
	counts := map[string]int{}
	for _, dl := range ds {
		h := header(t, dl.Data)
		to := field(h, "To")
		switch {
		case to == "undisclosed-recipients:;" && len(fields(h, "X-Config-A")) == 1 && len(fields(h, "X-Config-B")) == 0:
			counts["A"]++
		case to == "B:;" && len(fields(h, "X-Config-B")) == 1 && len(fields(h, "X-Config-A")) == 0:
			counts["B"]++
		default:
			t.Errorf("torn or missing decision: To %q, stamps A %q B %q", to, fields(h, "X-Config-A"), fields(h, "X-Config-B"))
		}
	}
	if hups.Load() < 100 {
		t.Errorf("only %d SIGHUPs sent", hups.Load())
	}
	d.stop(t)
	t.Logf("reload storm: %d SIGHUPs, %d messages: %v", hups.Load(), n, counts)
}

// TestOverload: many concurrent SMTP sessions through Postfix for a
// bounded time. Nothing beyond Postfix's own limits fails, nothing leaks.
func TestOverload(t *testing.T) {
	sink, d, pf := setup(t, cityConfig)
	const sessions = 1000
	start := time.Now()
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	var failed atomic.Int64
	deadline := time.Now().Add(5 * time.Minute) // ends as soon as every session is accepted
	for i := 0; i < sessions; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			rcpts, msg := burstMessage(i)
			for {
				t0 := time.Now()
				err := pf.Send("staff@city.example.jp", rcpts, msg)
				if err == nil {
					mu.Lock()
					lat = append(lat, time.Since(t0))
					mu.Unlock()
					return
				}
				// Postfix's own limits (process_limit, backlog) answer
				// 4xx or refuse the connection: a real client retries.
				if time.Now().After(deadline) {
					failed.Add(1)
					t.Errorf("session %d: %v", i, err)
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}(i)
	}
	wg.Wait()
	o := checkBurst(t, sink, sessions)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	rss := rssKiB(t, d.cmd.Process.Pid)
	if len(lat) > 0 {
		t.Logf("overload: %d concurrent sessions, %v, %s, p50 %v p99 %v max %v, bccguard VmHWM %d KiB",
			sessions, o, time.Since(start).Round(time.Millisecond), lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1], rss)
	}
}

// writeFileAtomic replaces a config file the way editors and config
// management should: write aside, rename over.
func writeFileAtomic(t *testing.T, path, body string) {
	tmp := path + ".tmp"
	if err := writeFileErr(tmp, body); err != nil {
		t.Error(err)
		return
	}
	if err := renameErr(tmp, path); err != nil {
		t.Error(err)
	}
}
