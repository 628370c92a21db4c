package postfixtest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// QueuedMessage is a message in the instance's queue, as reported by
// "postqueue -j".
type QueuedMessage struct {
	// QueueName is the queue holding the message: "maildrop", "incoming",
	// "active", "deferred" or "hold".
	QueueName string
	// QueueID is the Postfix queue ID, as used in the maillog.
	QueueID string
	// ArrivalTime is when the message entered the queue (second precision).
	ArrivalTime time.Time
	// MessageSize is the size of the message content in bytes.
	MessageSize int64
	// Sender is the envelope sender; empty for the null sender.
	Sender string
	// Recipients are the recipients still to be delivered.
	Recipients []QueuedRecipient
}

// QueuedRecipient is a recipient of a [QueuedMessage].
type QueuedRecipient struct {
	// Address is the recipient address.
	Address string
	// DelayReason says why delivery was deferred; empty if no attempt was
	// made yet.
	DelayReason string
}

// postqueueJSON mirrors one line of "postqueue -j" output.
type postqueueJSON struct {
	QueueName   string `json:"queue_name"`
	QueueID     string `json:"queue_id"`
	ArrivalTime int64  `json:"arrival_time"`
	MessageSize int64  `json:"message_size"`
	Sender      string `json:"sender"`
	Recipients  []struct {
		Address     string `json:"address"`
		DelayReason string `json:"delay_reason"`
	} `json:"recipients"`
}

// Flush asks Postfix to retry delivery of all deferred mail now
// ("postqueue -f"). It fails the test if that is not possible.
func (i *Instance) Flush(t testing.TB) {
	t.Helper()
	if _, err := run(i.sys.postqueue, "-c", i.confDir, "-f"); err != nil {
		t.Fatalf("postfixtest: flush queue: %v\n%s", err, i.logSection())
	}
}

// Queue returns the messages currently in the instance's queue. It fails
// the test if the queue cannot be listed.
func (i *Instance) Queue(t testing.TB) []QueuedMessage {
	t.Helper()
	q, err := i.queue()
	if err != nil {
		t.Fatalf("postfixtest: %v\n%s", err, i.logSection())
	}
	return q
}

func (i *Instance) queue() ([]QueuedMessage, error) {
	// postqueue -j asks the showq service, so it needs the instance running.
	out, err := run(i.sys.postqueue, "-c", i.confDir, "-j")
	if err != nil {
		return nil, fmt.Errorf("list queue: %w", err)
	}
	var msgs []QueuedMessage
	sc := bufio.NewScanner(strings.NewReader(out))
	// Lines grow with the number of recipients; the default 64 KiB limit is
	// too small for tests with many recipients.
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var raw postqueueJSON
		if err := json.Unmarshal([]byte(line), &raw); err != nil {
			return nil, fmt.Errorf("parse postqueue -j line %q: %w", line, err)
		}
		m := QueuedMessage{
			QueueName:   raw.QueueName,
			QueueID:     raw.QueueID,
			ArrivalTime: time.Unix(raw.ArrivalTime, 0),
			MessageSize: raw.MessageSize,
			Sender:      raw.Sender,
		}
		for _, r := range raw.Recipients {
			m.Recipients = append(m.Recipients, QueuedRecipient(r))
		}
		msgs = append(msgs, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read postqueue -j output: %w", err)
	}
	return msgs, nil
}

// WaitQueueEmpty waits until the instance's queue is empty, i.e. everything
// it accepted has been delivered (or bounced). It fails the test with the
// remaining queue and the maillog if that does not happen within timeout.
func (i *Instance) WaitQueueEmpty(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		q, err := i.queue()
		if err != nil {
			t.Fatalf("postfixtest: %v\n%s", err, i.logSection())
		}
		if len(q) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfixtest: queue of %s not empty after %v:%s\n%s",
				i.confDir, timeout, describeQueue(q), i.logSection())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func describeQueue(q []QueuedMessage) string {
	var b strings.Builder
	for _, m := range q {
		fmt.Fprintf(&b, "\n  %s (%s) from=<%s>", m.QueueID, m.QueueName, m.Sender)
		for _, r := range m.Recipients {
			fmt.Fprintf(&b, "\n    to=<%s>", r.Address)
			if r.DelayReason != "" {
				fmt.Fprintf(&b, " delayed: %s", r.DelayReason)
			}
		}
	}
	return b.String()
}
