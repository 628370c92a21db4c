package milter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/bccguard/bccguard/audit"
	"github.com/bccguard/bccguard/config"
	"github.com/bccguard/bccguard/policy"
	"github.com/bccguard/bccguard/reinject"
	"github.com/bccguard/bccguard/split"
)

// splitBudget bounds handing over the copies of one message. The sender's
// mail client waits for the answer to its DATA meanwhile, and gives up
// after about a minute (Outlook 60 s, Thunderbird 100 s by default) while
// Postfix still commits the message: the user sends it again and the Cc
// and Bcc recipients get it twice. So the budget stays under a minute: 20
// s plus a quarter second per copy allowed (split.max_recipients), 45 s
// with the default 100, never more than 4 minutes (inside Postfix's
// milter_content_timeout, 300 s by default). At the measured rate (more
// than a hundred copies per second, docs/performance.md) a split takes a
// second; the budget only matters when the reinjection service is slow,
// and then the copies not handed over in time leave their recipients on
// the hidden original. bccguard sends a progress message between copies,
// so that a lowered milter_content_timeout does not cut a split that is
// still moving.
//
// The budget is when the last copy may start, not when the split ends:
// copies are started until it, and one whose final dot is out is waited
// for up to reinject.timeout (one command's timeout) past it, since
// Postfix queued it before answering (package split, Run); a copy the
// budget cuts before its dot is discarded by Postfix. So a split ends at
// most the budget plus reinject.timeout after it began, and the budget is
// at most 4 minutes less the timeout, so that the two stay inside the 4
// minutes (config caps the timeout at a minute).
func splitBudget(maxRecipients int, timeout time.Duration) time.Duration {
	b := 20*time.Second + time.Duration(maxRecipients)*250*time.Millisecond
	return min(b, 4*time.Minute-timeout)
}

// On a connection whose snapshot uses split, splitActions is asked for on
// top of Actions and splitWantedEvents are taken out of Protocol (without
// replies to them, where Postfix offers that): the recipients and the body
// are needed, and recipients are removed once their copy is in Postfix's
// queue. Hide-only setups keep the lean protocol.
const (
	splitActions       = gomilter.OptRemoveRcpt
	splitWantedEvents  = gomilter.OptNoRcptTo | gomilter.OptNoBody
	splitQuietReplies  = gomilter.OptNoRcptReply | gomilter.OptNoBodyReply
	splitPruneInterval = time.Hour
)

// negotiate is go-milter's negotiation, with the events and actions of
// split added when the config snapshot at connect time uses split. The
// session reads back what was negotiated (splitNegotiated): a reload
// between the two cannot make it expect events it will not get.
func (s *Server) negotiate(mtaVersion, milterVersion uint32, mtaActions, milterActions gomilter.OptAction,
	mtaProtocol, milterProtocol gomilter.OptProtocol, _ gomilter.DataSize) (uint32, gomilter.OptAction, gomilter.OptProtocol, gomilter.DataSize, error) {
	version := min(mtaVersion, milterVersion)
	actions, protocol := milterActions, milterProtocol
	if c := s.config.Load(); c != nil && c.Policy != nil && c.Policy.UsesSplit() {
		actions |= splitActions
		protocol &^= splitWantedEvents
		protocol |= splitQuietReplies & mtaProtocol
	}
	if actions&mtaActions != actions {
		return 0, 0, 0, 0, fmt.Errorf("milter: negotiate: Postfix does not offer the actions %v (offered %v)", actions&^mtaActions, mtaActions)
	}
	if protocol&mtaProtocol != protocol {
		return 0, 0, 0, 0, fmt.Errorf("milter: negotiate: Postfix does not offer the protocol options %v (offered %v)", protocol&^mtaProtocol, mtaProtocol)
	}
	// Body chunks of at most 64 KiB, what Postfix sends anyway: an MTA
	// offering 1 MiB chunks would otherwise send packets over
	// MaxPacketSize, and every split session would end.
	return version, actions, protocol, gomilter.DataSize64K, nil
}

// splitNegotiated reports whether a connection can split: recipients and
// body are sent, recipients may be removed.
func splitNegotiated(m gomilter.Modifier) bool {
	return m.Actions()&splitActions != 0 && m.Protocol()&splitWantedEvents == 0
}

// maxSplitRcpts and maxSplitRcptBytes bound the envelope recipients a
// split session keeps for one message: a client that sends RCPT after
// RCPT would otherwise make the daemon hold them all (200,000 of 1 KiB
// took 300 MB). Postfix sends at most smtpd_recipient_limit recipients
// per message, 1000 by default, each an address of at most a few hundred
// bytes with its parameters: the bounds are ten times that and more. A
// message over either is hidden, never split (reason "recipients"): a
// split of the recipients kept could discard the original, and with it
// the recipients not kept.
const (
	maxSplitRcpts     = 10000
	maxSplitRcptBytes = 4 << 20
)

// splitState is what a split needs beyond what hide reads: the MAIL and
// RCPT parameters, every header field, the body. Collected only on
// connections negotiated for split.
type splitState struct {
	enabled  bool
	mailArgs string
	rcpts    []string
	rcptArgs []string
	// rcptCount counts every recipient of the message, rcptBytes those
	// kept; tooManyRcpts is set once either is over its bound, and the
	// recipients after that are counted, not kept.
	rcptCount    int
	rcptBytes    int64
	tooManyRcpts bool
	header       []policy.Field
	// size counts the header and body bytes received, as
	// split.Feasible counts them, also past split.max_message_bytes.
	size int64
	// body holds the body once the decision (made at the first body
	// chunk) says split; skipBody is set when it is not needed or cannot
	// be kept.
	body     *split.Spool
	skipBody bool
	tooBig   bool
	spoolErr error

	decided  bool
	decision policy.Decision
}

func (st *splitState) reset() {
	if st.body != nil {
		st.body.Close()
	}
	clear(st.header)
	clear(st.rcpts)
	clear(st.rcptArgs)
	*st = splitState{enabled: st.enabled, rcpts: st.rcpts[:0], rcptArgs: st.rcptArgs[:0], header: st.header[:0]}
}

func (st *splitState) addRcpt(rcpt, args string) {
	if !st.enabled {
		return
	}
	st.rcptCount++
	if st.tooManyRcpts {
		return
	}
	// Two string headers of the slices' elements as well as the bytes.
	st.rcptBytes += int64(len(rcpt) + len(args) + 32)
	if st.rcptCount > maxSplitRcpts || st.rcptBytes > maxSplitRcptBytes {
		// The policy still decides on those kept so far (its reason
		// then names the copies it would have made, as with
		// max_recipients); carryOutSplit falls back to hide.
		st.tooManyRcpts = true
		return
	}
	st.rcpts = append(st.rcpts, rcpt)
	st.rcptArgs = append(st.rcptArgs, args)
}

func (st *splitState) addHeader(name, value string, limit int64) {
	if !st.enabled {
		return
	}
	st.size += split.FieldSize(name, value)
	if st.tooBig {
		return
	}
	if st.size > limit {
		st.tooBig = true
		st.header = st.header[:0]
		return
	}
	st.header = append(st.header, policy.Field{Name: name, Value: value})
}

// decision decides once per message: at the first body chunk (to know
// whether the body is needed) or at end-of-message.
func (s *session) decision() policy.Decision {
	st := &s.split
	if !st.decided {
		msg := s.header.Message(s.sender)
		msg.Recipients = st.rcpts
		st.decision = s.server.decide(s.cfg.Policy, msg)
		st.decided = true
	}
	return st.decision
}

// bodyChunk keeps the body of a message that is to be split.
func (s *session) bodyChunk(chunk []byte) {
	st := &s.split
	if !st.enabled {
		return
	}
	st.size += int64(len(chunk))
	if st.skipBody {
		return
	}
	if st.body == nil {
		if d := s.decision(); d.Delivery != policy.DeliverySplit || d.DryRun || st.tooBig || st.tooManyRcpts {
			st.skipBody = true
			return
		}
		st.body = split.NewSpool(s.cfg.Split.StateDir)
	}
	if st.size > s.cfg.Split.MaxMessageBytes {
		st.tooBig = true
	} else if _, err := st.body.Write(chunk); err != nil {
		st.spoolErr = err
	} else {
		return
	}
	st.skipBody = true
	st.body.Close()
	st.body = nil
}

// splitPlanned reports whether the rule meant to split this message: a
// conversion under delivery: split whose To could be read (an unreadable
// one is hidden, never split).
func splitPlanned(d policy.Decision) bool {
	return d.Action == policy.Convert && !d.DryRun && d.Settings.Delivery == policy.DeliverySplit &&
		d.Parse != policy.ParseUnreadable && d.Parse != policy.ParseTooLarge
}

// splitResult is what end-of-message does after a split.
type splitResult struct {
	edits   []policy.Edit
	discard bool
	audit   *audit.Split
}

// carryOutSplit hands the copies over and removes their recipients from
// the original. Whatever fails, every recipient ends up with the message:
// a copy not handed over leaves its recipient on the original, which then
// goes out hidden. An error means the connection to Postfix broke; Postfix
// then tempfails the message and the retry finds the records.
func (s *session) carryOutSplit(m gomilter.Modifier, queueID string, d policy.Decision) (splitResult, error) {
	st := &s.split
	fallback := func(reason string, err error) (splitResult, error) {
		s.server.metrics.SplitFallback(reason)
		s.server.log.Warn("split not possible; the original goes to every recipient, hidden",
			slog.String("queue_id", queueID), slog.String("reason", reason), slog.String("error", redact(err)))
		return splitResult{edits: d.Edits, audit: &audit.Split{Left: st.rcptCount, Fallback: reason}}, nil
	}
	switch {
	case !st.enabled:
		return fallback("not_negotiated", errors.New("a reload turned split on while this milter connection was being negotiated"))
	case st.tooManyRcpts:
		// Before the check for copies: those were decided on the
		// recipients kept, and one not kept may be a moved To address.
		return fallback("recipients", fmt.Errorf("%d recipients, more than %d or %d bytes of them", st.rcptCount, maxSplitRcpts, maxSplitRcptBytes))
	case d.Delivery != policy.DeliverySplit:
		// No envelope recipient is a moved To address: a plain hide.
		return splitResult{edits: d.Edits}, nil
	}
	// The limits and the Message-ID rule, as `bccguard check` applies
	// them.
	if reason, err := split.Feasible(s.cfg.Split, split.Message{Copies: len(d.Copies), Size: st.size, Header: st.header, QueueID: queueID}); reason != "" {
		return fallback(reason, err)
	}
	switch {
	case st.spoolErr != nil:
		return fallback("spool", st.spoolErr)
	case s.server.isStopping():
		return fallback("shutdown", errStopped)
	}
	store, err := s.server.splitStores.get(s.cfg.Split, s.server.log)
	if err != nil {
		return fallback("state", err)
	}
	defer s.server.splitStores.running.Done()
	body := st.body
	if body == nil {
		// No body chunk came: the body is empty.
		body = split.NewSpool(s.cfg.Split.StateDir)
		st.body = body
	}
	args := map[string]string{}
	for i, r := range st.rcpts {
		args[r] = st.rcptArgs[i]
	}
	job := &split.Job{
		Digest: split.MessageDigest(s.sender, split.StableFields(st.header, queueID), body.BodySum()),
		Mail:   reinject.ParseMailArgs(s.sender, strings.Fields(st.mailArgs)),
		Rcpt:   func(a string) reinject.Rcpt { return reinject.ParseRcptArgs(a, strings.Fields(args[a])) },
		Header: st.header,
		Copies: d.Copies,
		Body:   body,
	}
	sp := &split.Splitter{Store: store, Reinject: reinject.Options{Address: s.cfg.Reinject.Address, Timeout: s.cfg.Reinject.Timeout}}
	ctx, cancel := context.WithTimeout(context.Background(), splitBudget(s.cfg.Split.MaxRecipients, sp.Reinject.CommandTimeout()))
	defer cancel()
	out := sp.Run(ctx, job, func() error {
		// Stop handing over copies once the daemon is stopping or the
		// milter connection is gone: Postfix would tempfail the
		// original and the retry would find only the records written
		// so far. Stopping between copies keeps every copy recorded;
		// the rest go out on the hidden original, if the session lives.
		if s.server.isStopping() {
			return errStopped
		}
		return m.Progress()
	})

	s.server.metrics.SplitCopies(out.Sent)
	if out.RecordErr != nil {
		s.server.log.Error("copy handed over but not recorded: a retry after a crash would send it again; no further copy handed over",
			slog.String("queue_id", queueID), slog.String("error", redact(out.RecordErr)))
	}
	removed := map[string]bool{}
	for i, c := range d.Copies {
		if !out.HandedOver[i] {
			continue
		}
		for _, r := range c.Rcpts {
			if removed[r] {
				continue
			}
			removed[r] = true
			if err := m.DeleteRecipient(r); err != nil {
				return splitResult{}, fmt.Errorf("milter: remove recipient: %w", err)
			}
		}
	}
	left := 0
	for _, r := range st.rcpts {
		if !removed[r] {
			left++
		}
	}
	res := splitResult{edits: d.Edits, audit: &audit.Split{Copies: out.Sent + out.Before, Before: out.Before, Left: left}}
	if out.Sent+out.Before > 0 {
		res.edits = d.SplitEdits
	}
	res.discard = left == 0
	if out.Failed > 0 {
		reason := "reinject"
		if out.RecordErr != nil {
			reason = "record"
		} else if errors.Is(out.Err, errStopped) {
			reason = "shutdown"
		} else if errors.Is(out.Err, split.ErrRecords) {
			reason = "state"
		}
		res.audit.Fallback = reason
		s.server.metrics.SplitFallback(reason)
		s.server.log.Warn("copies not handed over; their recipients get the original, hidden",
			slog.String("queue_id", queueID), slog.Int("not_handed_over", out.Failed),
			slog.Int("handed_over", out.Sent+out.Before), slog.String("error", redact(out.Err)))
	}
	return res, nil
}

// isStopping reports whether Shutdown or Close has begun.
func (s *Server) isStopping() bool {
	select {
	case <-s.stopping:
		return true
	default:
		return false
	}
}

// errStopped ends a split when the daemon begins to stop.
var errStopped = errors.New("bccguard is stopping")

// splitStores opens each state directory's records once, and prunes them
// now and then. A store that cannot be opened (damaged, locked, not
// ours) is not tried again until restart: every split on it falls back to
// hide, which loses and leaks nothing; a panic inside bbolt's Open leaves
// the file locked, so a second try would only wait out its timeout.
type splitStores struct {
	mu     sync.Mutex
	byDir  map[string]*storeEntry
	prunes sync.WaitGroup
	// running counts splits in progress: the stores are closed only
	// after they have returned (and written their last record).
	running sync.WaitGroup
	closed  bool
}

type storeEntry struct {
	once   sync.Once
	store  *split.Store
	err    error
	pruned time.Time
}

// open returns the records of c.StateDir, opening them on first use. The
// open runs outside mu: one slow or stuck state directory does not hold
// up splits on another.
func (ss *splitStores) open(c config.Split) (*storeEntry, error) {
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		return nil, errors.New("milter: shutting down")
	}
	e, ok := ss.byDir[c.StateDir]
	if !ok {
		if ss.byDir == nil {
			ss.byDir = map[string]*storeEntry{}
		}
		e = &storeEntry{}
		ss.byDir[c.StateDir] = e
	}
	ss.mu.Unlock()
	e.once.Do(func() { e.store, e.err = split.OpenStore(c.StateDir) })
	return e, e.err
}

// get returns the store for a split and starts a prune when one is due.
// The caller must call ss.running.Done when the split is over.
func (ss *splitStores) get(c config.Split, log *slog.Logger) (*split.Store, error) {
	e, err := ss.open(c)
	if err != nil {
		return nil, err
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return nil, errors.New("milter: shutting down")
	}
	ss.running.Add(1)
	if time.Since(e.pruned) > splitPruneInterval {
		e.pruned = time.Now()
		ss.prunes.Add(1)
		go func() {
			defer ss.prunes.Done()
			n, err := e.store.Prune(time.Now().Add(-c.Retention))
			if err != nil {
				log.Error("cannot prune split records", slog.String("state_dir", c.StateDir), slog.Any("error", err))
			} else if n > 0 {
				log.Info("pruned split records", slog.String("state_dir", c.StateDir), slog.Int("records", n))
			}
		}()
	}
	return e.store, nil
}

// close closes every store, once running splits and prunes are done.
func (ss *splitStores) close() {
	ss.mu.Lock()
	ss.closed = true
	ss.mu.Unlock()
	ss.running.Wait()
	ss.prunes.Wait()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for dir, e := range ss.byDir {
		if e.store != nil {
			e.store.Close()
		}
		delete(ss.byDir, dir)
	}
}

// OpenSplitStore opens and reads the records of the state directory of c
// when c uses split, so that a damaged or unusable split.db is reported
// when the daemon starts (or a reload turns split on), not at the first
// split. The error is for the log: the daemon keeps running and every
// message to split is hidden instead (see docs/reliability.md).
func (s *Server) OpenSplitStore(c *config.Config) error {
	if c == nil || c.Policy == nil || !c.Policy.UsesSplit() {
		return nil
	}
	_, err := s.splitStores.open(c.Split)
	return err
}

// addrPattern finds addresses in error texts: Postfix's replies quote the
// recipient.
var addrPattern = regexp.MustCompile(`[^\s<>"'(),;:\[\]]+@([A-Za-z0-9.-]+)`)

// redact renders an error for the log with each address reduced to its
// domain: the log shows addresses only as audit.recipients allows, and
// the domain is what every mode but none shows anyway.
func redact(err error) string {
	if err == nil {
		return ""
	}
	return addrPattern.ReplaceAllString(err.Error(), "(an address at $1)")
}
