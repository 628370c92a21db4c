package e2e

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// burstTally is what the recipients of a split burst received.
type burstTally struct {
	// lost: recipients with nothing; leaked: messages showing another's
	// address; copies: To recipients with their own copy; hiddenTo: To
	// recipients given the hidden original instead; badCopies: copies
	// whose body or stamp differ from the original's.
	lost, leaked, copies, hiddenTo, badCopies int
	// dupTo and dupCc count second messages to To and to Cc recipients.
	dupTo, dupCc int
}

func tallyBurst(t *testing.T, all map[string]map[string][]received, n int) burstTally {
	t.Helper()
	var b burstTally
	for i := range n {
		rcpts, _ := splitBurstMessage(i)
		subject := fmt.Sprintf("split burst %d", i)
		want := []byte(fmt.Sprintf("body %d\r\n", i))
		got := all[subject]
		for _, rc := range rcpts {
			rs := got[rc]
			cc := strings.HasPrefix(rc, "cc")
			switch {
			case len(rs) == 0:
				b.lost++
			case len(rs) > 1 && cc:
				b.dupCc += len(rs) - 1
			case len(rs) > 1:
				b.dupTo += len(rs) - 1
			}
			own := false
			for _, r := range rs {
				switch {
				case r.to == "undisclosed-recipients:;":
				case !cc && r.to == rc:
					own = true
					if string(r.body) != string(want) || !strings.HasPrefix(r.stamp, "split;") {
						b.badCopies++
						t.Errorf("%s: %s's copy: body %q, stamp %q", subject, rc, r.body, r.stamp)
					}
				default:
					b.leaked++
					t.Errorf("%s: %s sees To %q", subject, rc, r.to)
				}
			}
			if !cc && len(rs) > 0 {
				if own {
					b.copies++
				} else {
					b.hiddenTo++
				}
			}
		}
	}
	return b
}

// TestSplitStoppedDuringBurst: bccguard gets SIGTERM (systemctl restart,
// an upgrade) while splitting a burst; clients retry what was tempfailed
// and bccguard is started again on the same state_dir. A split in
// progress stops handing over copies at once, its remaining recipients
// get the hidden original in the same session, and every copy handed
// over is recorded before the records are closed: nobody is without the
// message, and nobody gets it twice.
func TestSplitStoppedDuringBurst(t *testing.T) {
	sink, d, pf, _ := splitSetup(t)
	cfg := writeConfig(t, strings.Replace(splitConfig(pf.ReinjectAddr(), t.TempDir()), "max_recipients: 5", "max_recipients: 100", 1))
	d.stop(t)
	d = startDaemon(t, cfg, d.addr)
	const n = 30
	var once sync.Once
	again := make(chan restarted, 1)
	stopped := make(chan string, 1)
	deferred := sendBurstOf(t, pf, n, 6, time.Now().Add(120*time.Second), splitBurstMessage, func(accepted int64) {
		if accepted == n/3 {
			once.Do(func() {
				go func() {
					if err := d.terminate(); err != nil {
						stopped <- d.log.String()
						again <- restarted{err: err}
						return
					}
					stopped <- d.log.String()
					next, err := launchDaemon(t, cfg, d.addr)
					again <- restarted{next, err}
				}()
			})
		}
	})
	d2 := (<-again).daemon(t)
	log1 := <-stopped
	pf.WaitQueueEmpty(t, 60*time.Second)
	time.Sleep(2 * time.Second) // let stragglers (duplicates) arrive
	b := tallyBurst(t, collect(t, sink), n)
	t.Logf("SIGTERM mid-split-burst: messages=%d recipients=%d copies=%d hidden-to=%d deferred(4xx, retried)=%d lost=%d leaked=%d duplicated to=%d cc=%d; splits stopped by the shutdown=%d",
		n, n*11, b.copies, b.hiddenTo, deferred, b.lost, b.leaked, b.dupTo, b.dupCc, strings.Count(log1, "split_fallback=shutdown"))
	if b.lost != 0 || b.leaked != 0 || b.badCopies != 0 {
		t.Errorf("lost %d, leaked %d, bad copies %d", b.lost, b.leaked, b.badCopies)
	}
	if b.dupTo != 0 || b.dupCc != 0 {
		t.Errorf("second messages: %d to To recipients, %d to Cc recipients", b.dupTo, b.dupCc)
	}
	if !strings.Contains(log1, "split_fallback=shutdown") {
		t.Errorf("no split was stopped by SIGTERM: the stop did not happen mid-split:\n%s", log1)
	}
	// Only the splits in flight at the stop (six clients) hide for some
	// of their To recipients; every other To recipient has a copy.
	if b.hiddenTo > 6*10 {
		t.Errorf("%d To recipients got the hidden original: more than the splits in flight", b.hiddenTo)
	}
	d2.checkLog(t)
}

// TestSplitHidesWithoutMessageID: a message without a Message-ID gets one
// from Postfix, built from its queue id, new on each attempt: its retry
// could not be told from a new message, so it is hidden, not split.
func TestSplitHidesWithoutMessageID(t *testing.T) {
	sink, d, pf, _ := splitSetup(t)
	rcpts := []string{"n1@ext.example", "n2@other.example"}
	msg := "From: staff@city.example.jp\r\nTo: n1@ext.example, n2@other.example\r\nSubject: no message-id\r\n\r\nbody\r\n"
	if err := pf.Send("staff@city.example.jp", rcpts, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := byRecipient(t, sink, "no message-id", rcpts)
	onceHidden(t, "no message-id", got, rcpts)
	if !strings.Contains(d.log.String(), "split_fallback=message_id") {
		t.Errorf("no fallback logged:\n%s", d.log)
	}
}
