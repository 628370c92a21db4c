// Package reinject hands messages back to Postfix over SMTP, to a smtpd
// service on loopback that does not run bccguard (the pattern Postfix's
// FILTER_README uses for content filters).
//
// A message counts as handed over only when Postfix answered 250 to the end
// of its DATA: from then on the message is in Postfix's queue. Anything else
// (a refused command, a timeout, a lost connection) leaves it with the
// caller, who must deliver it another way.
//
// Postfix's smtpd commits the message to its queue when it has read the
// final dot, before it writes the 250 (smtpd.c data_cmd: mail_stream_finish
// waits for cleanup's fsync'd queue file, then "250 2.0.0 Ok: queued as"),
// and it does not undo that when the client is gone. So once the dot is
// sent, giving up is what makes two messages: the reply to the dot is
// always waited for, for Options.Timeout, even past the caller's context.
// Sending the dot is not: a write of it that the context cuts short leaves
// Postfix without the end of the message, and it discards the message when
// the connection closes. So a call ends at most Options.Timeout after its
// context.
// A reply that is lost after all (Postfix stalled past the timeout, the
// connection broke) is the one ambiguous case left: Postfix may have
// queued the message; the Result says "not handed over", so the caller
// errs towards a second copy rather than none.
//
// Several transactions go over one connection (RSET after a refused one);
// go-smtp's client does not pipeline, so each command waits for its reply.
package reinject

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/bccguard/bccguard/config"
)

// DefaultTimeout bounds each SMTP command when Options.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Options say where and how to connect.
type Options struct {
	// Address is the smtpd service in Postfix syntax: "inet:HOST:PORT" or
	// "unix:/path".
	Address string
	// Timeout bounds each SMTP command (connect, greeting, each command's
	// reply, each write of the message, the reply to the final dot).
	// Zero means DefaultTimeout.
	Timeout time.Duration
	// HeloName is the name given in EHLO; "" means "localhost".
	HeloName string
}

// CommandTimeout is Timeout, or DefaultTimeout when that is zero: how
// long one command may take, and so the least time one message needs.
func (o Options) CommandTimeout() time.Duration {
	if o.Timeout <= 0 {
		return DefaultTimeout
	}
	return o.Timeout
}

// Mail holds the envelope sender and the MAIL FROM parameters.
type Mail struct {
	// From is the envelope sender without angle brackets; "" is the null
	// sender <> (bounces, notices).
	From string
	// Body is the BODY parameter as the client gave it (7BIT, 8BITMIME);
	// "" means none. go-smtp announces BODY=8BITMIME whenever the server
	// offers 8BITMIME, whatever this says: harmless, since 7bit data is
	// valid 8bit data, and Postfix never offers BINARYMIME.
	Body smtp.BodyType
	// SMTPUTF8 asks for the SMTPUTF8 extension (UTF-8 addresses or
	// headers).
	SMTPUTF8 bool
	// Ret is the DSN RET parameter (FULL or HDRS); "" means none.
	Ret smtp.DSNReturn
	// EnvID is the DSN ENVID parameter, decoded (not xtext); "" means none.
	EnvID string
}

// Rcpt is one envelope recipient with its RCPT TO parameters.
type Rcpt struct {
	// Addr is the address without angle brackets.
	Addr string
	// Notify is the DSN NOTIFY parameter (NEVER, or some of SUCCESS,
	// FAILURE, DELAY); nil means none.
	Notify []smtp.DSNNotify
	// ORcptType and ORcpt are the DSN ORCPT parameter, decoded ("rfc822",
	// "bob@example.com"); ORcpt "" means none.
	ORcptType smtp.DSNAddressType
	ORcpt     string
}

// Transaction is one message to hand over.
type Transaction struct {
	Mail  Mail
	Rcpts []Rcpt
	// Message is the whole message, header and body, with CRLF or LF line
	// endings; dot-stuffing is done here.
	Message io.Reader
	// BeforeEnd, when set, is called after the message was written and
	// before the final dot, the moment from which Postfix may commit it:
	// a caller can finish other work there (bccguard waits for the
	// record of the previous copy). An error abandons the transaction
	// (the connection is dropped, so Postfix discards the message).
	BeforeEnd func() error
}

// Result says what became of one Transaction.
type Result struct {
	// HandedOver is true only when Postfix answered 250 to DATA: the
	// message is in its queue.
	HandedOver bool
	// QueueID is Postfix's queue id from the 250 reply ("queued as ..."),
	// when it said one.
	QueueID string
	// Err says why the message was not handed over; it wraps the reply as
	// a *smtp.SMTPError when Postfix refused a command, and names the
	// stage (connect, MAIL, RCPT, DATA).
	Err error
}

// Send hands every transaction over, in order, over one connection. It
// returns one Result per transaction. A transaction that Postfix refuses
// is reset and the next one goes on; after a connection failure the
// remaining transactions fail with that error. ctx bounds the whole call,
// except the wait for the reply to a final dot already sent (Dial).
func Send(ctx context.Context, opts Options, txs []Transaction) []Result {
	results := make([]Result, len(txs))
	c, err := Dial(ctx, opts)
	if err != nil {
		for i := range results {
			results[i].Err = err
		}
		return results
	}
	defer c.Close()
	for i := range txs {
		if c.broken != nil {
			results[i].Err = c.broken
			continue
		}
		results[i] = c.Send(&txs[i])
	}
	return results
}

// Client is one SMTP connection to the reinjection service. It is not safe
// for concurrent use.
type Client struct {
	ctx    context.Context
	conn   *timeoutConn
	smtp   *smtp.Client
	stop   func() bool
	broken error // set once the connection is unusable
}

// Dial connects, reads the greeting and says EHLO. ctx bounds the life of
// the connection: when it ends, the connection is closed, and a message
// not yet ended with its final dot is abandoned (Postfix discards it). A
// final dot is sent only while ctx lasts, its write included; its reply
// is then waited for, for opts.Timeout, even past ctx's end (see the
// package comment).
func Dial(ctx context.Context, opts Options) (*Client, error) {
	network, address, err := config.ParseListen(opts.Address)
	if err != nil {
		return nil, fmt.Errorf("reinject: address: %w", err)
	}
	timeout := opts.CommandTimeout()
	d := net.Dialer{Timeout: timeout}
	raw, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("reinject: connect to %s: %w", opts.Address, err)
	}
	conn := &timeoutConn{Conn: raw, timeout: timeout}
	conn.limit, _ = ctx.Deadline()
	c := &Client{ctx: ctx, conn: conn, smtp: smtp.NewClient(conn)}
	c.smtp.CommandTimeout = timeout
	c.smtp.SubmissionTimeout = timeout
	// Cancelling ctx closes the connection, which ends any blocked read or
	// write at once; while the final dot is written or its reply awaited
	// (endData) it only ends the writes.
	c.stop = context.AfterFunc(ctx, conn.endCtx)
	helo := opts.HeloName
	if helo == "" {
		helo = "localhost"
	}
	if err := c.smtp.Hello(helo); err != nil {
		c.Close()
		return nil, fmt.Errorf("reinject: greeting and EHLO at %s: %w", opts.Address, ctxErr(ctx, err))
	}
	return c, nil
}

// Send runs one transaction: MAIL, RCPT for each recipient, DATA. Any
// refusal fails the whole transaction (a copy with only some of its
// recipients accepted would be half handed over), and the transaction is
// reset so that the connection can carry the next one.
func (c *Client) Send(tx *Transaction) Result {
	if c.broken != nil {
		return Result{Err: c.broken}
	}
	if len(tx.Rcpts) == 0 {
		return Result{Err: errors.New("reinject: a transaction without recipients")}
	}
	fail := func(stage string, err error) Result {
		err = fmt.Errorf("reinject: %s: %w", stage, ctxErr(c.ctx, err))
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			// The server answered: the connection still works.
			if rerr := c.smtp.Reset(); rerr != nil {
				c.broken = fmt.Errorf("reinject: RSET after a refused %s: %w", stage, rerr)
			}
		} else {
			c.broken = err
		}
		return Result{Err: err}
	}
	if err := c.smtp.Mail(tx.Mail.From, mailOptions(tx.Mail)); err != nil {
		return fail("MAIL FROM", err)
	}
	for _, r := range tx.Rcpts {
		if err := c.smtp.Rcpt(r.Addr, rcptOptions(r)); err != nil {
			return fail("RCPT TO", err)
		}
	}
	w, err := c.smtp.Data()
	if err != nil {
		return fail("DATA", err)
	}
	_, err = io.Copy(w, tx.Message)
	if err == nil && tx.BeforeEnd != nil {
		err = tx.BeforeEnd()
	}
	if err != nil {
		// Half a message was sent: the only way out is to drop the
		// connection, so that Postfix discards it.
		c.broken = fmt.Errorf("reinject: sending the message: %w", ctxErr(c.ctx, err))
		c.conn.Conn.Close()
		return Result{Err: c.broken}
	}
	resp, dotSent, err := c.endData(w)
	var se *smtp.SMTPError
	switch {
	case err == nil:
		return Result{HandedOver: true, QueueID: queueID(resp.StatusText)}
	case !dotSent || errors.As(err, &se):
		return fail("end of DATA", err)
	}
	// Not ctx's doing (it no longer closes the connection once the dot
	// is out): the reply took over the per-command timeout, or the
	// connection broke after the dot.
	c.broken = fmt.Errorf("reinject: reply to the final dot, lost (Postfix may have queued the message): %w", err)
	c.conn.Conn.Close()
	return Result{Err: c.broken}
}

// endData sends the final dot, if ctx has not ended, and reads its reply
// for the per-command timeout, whatever ctx says meanwhile: Postfix queues
// the message once it has the dot, so a reply cut by ctx would leave a
// message in Postfix's queue that the caller thinks was not handed over
// (a recipient with two copies). ctx's end is acted on after the reply.
//
// The dot goes out with the message's last bytes (go-smtp buffers up to
// 4 KiB), and that write is still bounded by ctx: a Postfix that stops
// reading would otherwise hold the call for a write timeout and then a
// reply timeout past ctx's end. A write cut short, by ctx or its own
// timeout, leaves Postfix without the complete dot; the connection is
// closed and Postfix discards the message, so it is not handed over.
// dotSent is false then, and when ctx had ended before the dot.
func (c *Client) endData(w *smtp.DataCommand) (resp *smtp.DataResponse, dotSent bool, err error) {
	if !c.conn.awaitReply() {
		c.conn.Conn.Close()
		return nil, false, errors.New("the final dot not sent")
	}
	resp, err = w.CloseWithResponse()
	werr, ended := c.conn.replyRead()
	if werr != nil {
		c.conn.Conn.Close()
		return nil, false, fmt.Errorf("the final dot not sent in full: %w", werr)
	}
	if ended {
		// What the AfterFunc left undone: the next transaction is not
		// started.
		c.conn.Conn.Close()
		if err == nil {
			c.broken = fmt.Errorf("reinject: %w", context.Cause(c.ctx))
		}
	}
	return resp, true, err
}

// Close says QUIT (briefly) and closes the connection.
func (c *Client) Close() error {
	defer c.stop()
	if c.broken == nil {
		if err := c.smtp.Quit(); err == nil {
			return nil
		}
	}
	return c.smtp.Close()
}

func mailOptions(m Mail) *smtp.MailOptions {
	return &smtp.MailOptions{Body: m.Body, UTF8: m.SMTPUTF8, Return: m.Ret, EnvelopeID: m.EnvID}
}

func rcptOptions(r Rcpt) *smtp.RcptOptions {
	o := &smtp.RcptOptions{Notify: r.Notify}
	if r.ORcpt != "" {
		o.OriginalRecipient = r.ORcpt
		o.OriginalRecipientType = r.ORcptType
		if o.OriginalRecipientType == "" {
			o.OriginalRecipientType = smtp.DSNAddressTypeRFC822
		}
	}
	return o
}

// queueID picks the id out of Postfix's "2.0.0 Ok: queued as 4Xyz..." reply.
func queueID(text string) string {
	_, id, ok := strings.Cut(text, "queued as ")
	if !ok {
		return ""
	}
	if f := strings.Fields(id); len(f) > 0 {
		return f[0]
	}
	return ""
}

func ctxErr(ctx context.Context, err error) error {
	cerr := ctx.Err()
	// The connection's deadlines never pass ctx's (timeoutConn), so an I/O
	// timeout at ctx's deadline is the context's, although ctx's own timer
	// may not have fired yet.
	if dl, ok := ctx.Deadline(); cerr == nil && ok && !time.Now().Before(dl) {
		cerr = context.DeadlineExceeded
	}
	if cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}

// timeoutConn gives every write its own deadline (go-smtp sets deadlines
// for command replies but none while the message is written) and never
// lets a deadline pass the caller's, except the read deadline of the
// reply to a final dot (awaitReply).
type timeoutConn struct {
	net.Conn
	timeout time.Duration
	limit   time.Time // ctx's deadline; zero: none

	// mu guards what follows, shared with endCtx, which runs when the
	// caller's context ends.
	mu sync.Mutex
	// reply is set while the final dot is written and its reply read:
	// reads may then pass limit, writes never do.
	reply bool
	// ended is set once the context has ended: every write fails at once.
	ended bool
	// werr is the first failed write since awaitReply.
	werr error
}

// clamp bounds t by limit; reads while awaiting a reply are not bounded.
func (c *timeoutConn) clamp(t time.Time, read bool) time.Time {
	if read && c.reply {
		return t
	}
	if c.ended {
		return time.Unix(1, 0) // in the past: fail at once
	}
	if !c.limit.IsZero() && (t.IsZero() || t.After(c.limit)) {
		return c.limit
	}
	return t
}

func (c *timeoutConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.Conn.SetWriteDeadline(c.clamp(t, false)); err != nil {
		return err
	}
	return c.Conn.SetReadDeadline(c.clamp(t, true))
}

func (c *timeoutConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	err := c.Conn.SetWriteDeadline(c.clamp(time.Now().Add(c.timeout), false))
	c.mu.Unlock()
	n := 0
	if err == nil {
		n, err = c.Conn.Write(b)
	}
	if err != nil {
		c.mu.Lock()
		if c.reply && c.werr == nil {
			c.werr = err
		}
		c.mu.Unlock()
	}
	return n, err
}

// awaitReply switches to the bounds for a final dot and its reply, unless
// the context has ended: then it reports false, and no dot may be sent.
func (c *timeoutConn) awaitReply() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return false
	}
	c.reply, c.werr = true, nil
	return true
}

// replyRead switches back to the bounds for everything else, and reports
// the first write that failed meanwhile and whether the context has ended.
func (c *timeoutConn) replyRead() (werr error, ended bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reply = false
	return c.werr, c.ended
}

// endCtx is what the end of the caller's context does: it closes the
// connection, which ends any blocked read or write at once; while a final
// dot is written or its reply awaited it only ends the writes (one in
// progress too) and leaves the reply to be read.
func (c *timeoutConn) endCtx() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended = true
	if c.reply {
		c.Conn.SetWriteDeadline(c.clamp(time.Time{}, false))
	} else {
		c.Conn.Close()
	}
}
