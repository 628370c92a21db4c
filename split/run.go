package split

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/bccguard/bccguard/policy"
	"github.com/bccguard/bccguard/reinject"
)

// Job is one message to split.
type Job struct {
	// Digest identifies the message across retries (MessageDigest).
	Digest Digest
	// Mail is the envelope sender with the message's MAIL parameters.
	Mail reinject.Mail
	// Rcpt returns an envelope recipient with its RCPT parameters.
	Rcpt func(addr string) reinject.Rcpt
	// Header is the original header, every field in order.
	Header []policy.Field
	// Copies are the policy's copies.
	Copies []policy.Copy
	// Body is the original body.
	Body *Spool
}

// Outcome says what became of each copy.
type Outcome struct {
	// HandedOver tells, per copy, whether Postfix has it: handed over now,
	// or found in the records of an earlier attempt.
	HandedOver []bool
	// Sent counts the copies handed over now, Before those found in the
	// records, Failed those not handed over.
	Sent, Before, Failed int
	// Err is the first reason a copy was not handed over.
	Err error
	// RecordErr is the first failure to write a record: the copy was
	// handed over, but a retry after a crash would send it again.
	RecordErr error
}

// ErrRecords marks a failure to read the records: then no copy is made.
var ErrRecords = errors.New("split: records unreadable")

// Splitter hands copies over and keeps the records.
type Splitter struct {
	Store    *Store
	Reinject reinject.Options
}

// Run hands over every copy not yet recorded, over one connection, and
// records each one Postfix accepted. progress is called before each copy
// after the first (the milter tells Postfix it is still working); when it
// returns an error (the milter connection is gone, the daemon is stopping)
// no further copy is handed over and the rest count as failed: their
// recipients stay on the original. Progress never interrupts a copy, so
// each one handed over is also recorded.
//
// ctx's deadline is the split's time limit. Copies are started until it;
// one it reaches before its final dot is out is abandoned (Postfix
// discards it, its recipient stays on the original), and one whose final
// dot is out is waited for even past it, for reinject's per-command
// timeout (package reinject): Postfix has queued it before it answers,
// and giving up on its 250 would leave the recipient a copy and the
// original both. So a split ends at most one per-command timeout after
// its deadline, when Postfix is slow to answer the last dot.
func (s *Splitter) Run(ctx context.Context, job *Job, progress func() error) Outcome {
	out := Outcome{HandedOver: make([]bool, len(job.Copies))}
	done, err := s.Store.HandedOver(job.Digest)
	if err != nil {
		// Without the records a retry cannot be told from a new message:
		// send nothing, so that nobody gets a copy twice.
		out.Failed, out.Err = len(job.Copies), fmt.Errorf("%w: %w", ErrRecords, err)
		return out
	}
	var pending []int
	for i, c := range job.Copies {
		if done[policy.RecipientKey(c.Rcpts[0])] {
			out.HandedOver[i] = true
			out.Before++
			continue
		}
		pending = append(pending, i)
	}
	if len(pending) == 0 {
		return out
	}
	client, err := reinject.Dial(ctx, s.Reinject)
	if err != nil {
		out.Failed, out.Err = len(pending), err
		return out
	}
	defer client.Close()
	// Each record is written while the next copy is being sent, and
	// finished before that copy's final dot: the fsync does not hold up
	// the next copy, and at any moment at most one copy of this message
	// is in Postfix's queue without its record (the window).
	// A record that failed (disk full, damaged file) stops the split:
	// waitRecord's error makes the next copy end without its final dot
	// (Postfix discards it), and no further copy is tried. A copy without
	// a record would be sent again by a retry.
	var recorded chan struct{}
	waitRecord := func() error {
		if recorded != nil {
			<-recorded
			recorded = nil
		}
		return out.RecordErr
	}
	defer waitRecord()
	record := func(rcpt, queueID string) {
		done := make(chan struct{})
		recorded = done
		go func() {
			defer close(done)
			// Only this goroutine touches RecordErr until waitRecord
			// has seen done closed.
			if err := s.Store.Record(job.Digest, rcpt, queueID, time.Now()); err != nil && out.RecordErr == nil {
				out.RecordErr = err
			}
		}()
	}
	var recordErr error // RecordErr, read only after waitRecord
	for n, i := range pending {
		stop := recordErr
		if stop == nil && n > 0 && progress != nil {
			stop = progress()
		}
		if stop != nil {
			out.Failed += len(pending) - n
			if out.Err == nil {
				out.Err = fmt.Errorf("split: stopped: %w", stop)
			}
			break
		}
		c := job.Copies[i]
		header := policy.FormatHeader(policy.Apply(job.Header, c.Edits))
		tx := reinject.Transaction{
			Mail:      job.Mail,
			Rcpts:     []reinject.Rcpt{job.Rcpt(c.Rcpts[0])},
			Message:   io.MultiReader(strings.NewReader(header), job.Body.Reader()),
			BeforeEnd: waitRecord,
		}
		res := client.Send(&tx)
		// The transaction may have failed before BeforeEnd.
		recordErr = waitRecord()
		if !res.HandedOver {
			out.Failed++
			if out.Err == nil {
				out.Err = res.Err
			}
			continue
		}
		out.HandedOver[i] = true
		out.Sent++
		record(policy.RecipientKey(c.Rcpts[0]), res.QueueID)
	}
	waitRecord()
	if out.Err == nil && out.Failed > 0 {
		out.Err = errors.New("split: not every copy was handed over")
	}
	return out
}
