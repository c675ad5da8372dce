package mailer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	mail "github.com/wneessen/go-mail"
)

// Default ports of the SMTP URL schemes.
const (
	defaultSMTPPort  = 587 // submission, with STARTTLS when offered
	defaultSMTPSPort = 465 // implicit TLS
)

// SMTP is a Mailer that submits messages to an SMTP server. It opens one
// connection per message, so it is safe for concurrent use.
type SMTP struct {
	host     string
	port     int
	implicit bool // smtps://: TLS from the first byte
	user     string
	pass     string
	tlsMode  TLSMode // smtp://: whether STARTTLS is required
	timeout  time.Duration
	now      func() time.Time
}

// SMTP implements Mailer.
var _ Mailer = (*SMTP)(nil)

// TLSMode is how an smtp:// mailer uses STARTTLS (SMTP_TLS); smtps://
// speaks TLS from the first byte whatever the mode.
type TLSMode string

// The TLS modes.
const (
	// TLSOpportunistic uses STARTTLS when the server offers it and sends
	// in clear text when it does not (the default).
	TLSOpportunistic TLSMode = "opportunistic"
	// TLSRequired requires STARTTLS: a server that does not offer it (or
	// a proxy that hides it) ends the send before AUTH and MAIL FROM with
	// ErrSTARTTLSRequired, and nothing is sent.
	TLSRequired TLSMode = "required"
)

// ParseTLSMode parses an SMTP_TLS value: "opportunistic" or "required"
// (any case); "" is TLSOpportunistic.
func ParseTLSMode(s string) (TLSMode, error) {
	switch m := TLSMode(strings.ToLower(strings.TrimSpace(s))); m {
	case "":
		return TLSOpportunistic, nil
	case TLSOpportunistic, TLSRequired:
		return m, nil
	}
	return "", fmt.Errorf("must be %s or %s, got %.40q", TLSOpportunistic, TLSRequired, s)
}

// ErrSTARTTLSRequired: TLSRequired, and the server did not offer STARTTLS
// (or something between hid it); nothing was sent. A send that fails with
// it is worth retrying once the server, or the path to it, is fixed.
var ErrSTARTTLSRequired = errors.New("the SMTP server does not offer STARTTLS, which SMTP_TLS=required requires: nothing was sent")

// Option configures an SMTP mailer.
type Option func(*SMTP)

// WithTLSMode sets how an smtp:// mailer uses STARTTLS; the default is
// TLSOpportunistic.
func WithTLSMode(m TLSMode) Option { return func(s *SMTP) { s.tlsMode = m } }

// NewSMTP parses smtpURL and returns a mailer for it:
//
//	smtp://[user:pass@]host[:port]   STARTTLS when the server offers it (port 587 by default)
//	smtps://[user:pass@]host[:port]  implicit TLS (port 465 by default)
//
// Credentials, when a user is given, are sent with AUTH PLAIN, which go-mail
// only does over TLS or to a loopback host (localhost, 127.0.0.1, ::1).
// User and password may be percent-encoded.
//
// With WithTLSMode(TLSRequired), an smtp:// mailer sends only after
// STARTTLS.
func NewSMTP(smtpURL string, opts ...Option) (*SMTP, error) {
	u, err := url.Parse(smtpURL)
	if err != nil {
		// url.Parse's error quotes the URL, password included.
		return nil, errors.New("new smtp mailer: malformed SMTP URL")
	}
	s := &SMTP{host: u.Hostname(), tlsMode: TLSOpportunistic, timeout: 30 * time.Second, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	if s.tlsMode != TLSOpportunistic && s.tlsMode != TLSRequired {
		return nil, fmt.Errorf("new smtp mailer: TLS mode %.40q: want %s or %s", s.tlsMode, TLSOpportunistic, TLSRequired)
	}
	switch u.Scheme {
	case "smtp":
		s.port = defaultSMTPPort
	case "smtps":
		s.port, s.implicit = defaultSMTPSPort, true
	default:
		return nil, fmt.Errorf("new smtp mailer: scheme %q: want smtp or smtps", u.Scheme)
	}
	if s.host == "" {
		return nil, errors.New("new smtp mailer: no host in SMTP URL")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			// Not quoted: an unencoded '#', '?' or '/' in the password
			// ends the authority there, and the password's digits
			// before it are taken for the port.
			return nil, errors.New("new smtp mailer: bad port: want 1 to 65535 (percent-encode '/', '?' and '#' in user and password)")
		}
		s.port = n
	}
	// Neither is quoted: an unencoded '/', '?' or '#' in the password
	// puts the rest of it there.
	if u.Path != "" && u.Path != "/" {
		return nil, errors.New("new smtp mailer: unexpected path in SMTP URL (percent-encode '/', '?' and '#' in user and password)")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.RawFragment != "" || strings.HasSuffix(smtpURL, "#") {
		return nil, errors.New("new smtp mailer: unexpected query or fragment in SMTP URL (percent-encode '/', '?' and '#' in user and password)")
	}
	if u.User != nil {
		s.user = u.User.Username()
		s.pass, _ = u.User.Password()
	}
	return s, nil
}

// String returns the server address and scheme without the password, for
// logs.
func (s *SMTP) String() string {
	scheme := "smtp"
	if s.implicit {
		scheme = "smtps"
	}
	u := url.URL{Scheme: scheme, Host: net.JoinHostPort(s.host, strconv.Itoa(s.port))}
	if s.user != "" {
		u.User = url.User(s.user)
	}
	return u.String()
}

// client returns a new go-mail client for one message, whose connection
// ends with ctx (ctxConn). go-mail's timeout is s.timeout, or the time
// left until ctx's deadline when that is longer: go-mail sets it once for
// the greeting and once for the whole transaction (MAIL FROM to the
// server's verdict on the message), and a send cut short there, with the
// message uploaded, may be one the server accepts, which the caller then
// sends again. ctxConn still ends every phase at ctx's deadline.
func (s *SMTP) client(ctx context.Context, dialed *net.Conn) (*mail.Client, error) {
	timeout := s.timeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(timeout, time.Until(dl))
	}
	opts := []mail.Option{mail.WithPort(s.port), mail.WithTimeout(timeout), mail.WithDialContextFunc(s.dial(ctx, dialed))}
	if s.implicit {
		// go-mail dials TLS itself only without a dial function: s.dial
		// does the handshake, and go-mail sees a *tls.Conn.
		opts = append(opts, mail.WithSSL())
	} else if s.tlsMode == TLSRequired {
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	} else {
		opts = append(opts, mail.WithTLSPolicy(mail.TLSOpportunistic))
	}
	if s.user != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthPlain),
			mail.WithUsername(s.user), mail.WithPassword(s.pass))
	}
	return mail.NewClient(s.host, opts...)
}

// Send submits m. It stops when ctx ends: a cancelled ctx stops a send
// that has not connected yet, and the connection's deadlines never reach
// past ctx's (a server that hangs, before its greeting or before its
// verdict on the message, holds Send until ctx's deadline or cancellation:
// not longer, and, when ctx has a deadline, not shorter either, see
// client). A send cut short after the end of DATA reports an error
// although the server may have accepted the message: the caller sends
// again, with the same Message-ID. A nil
// error means the server accepted the message
// (its reply to the end of DATA): an error after that (the RSET go-mail
// sends after each message, the QUIT that closes the connection) is
// ignored, because reporting it would make the caller send the accepted
// message again. A permanent refusal of the recipient (a 5xx reply to
// RCPT TO, but 552, 530 and refusals of the sender such as 5.7.x:
// refusedForGood) wraps
// ErrRecipientRefused. A send error does not
// name the recipient's address (withoutRecipient). A server that offers
// SMTPUTF8 (RFC 6531) gets the addresses as they are; one that does not
// gets an internationalized domain (müller.de) as its A-label
// (xn--mller-kva.de) in MAIL FROM, RCPT TO and the From and To headers
// alike (buildMsg), and nothing at all (no MAIL FROM) when a local part is
// not ASCII (zoë@example.com), which has no ASCII form: the error wraps
// ErrRecipientNeedsSMTPUTF8 for the recipient's, and is an ordinary one
// for the sender's. Send closes its
// connection before it returns, also when the QUIT fails (a server that
// stopped answering, or dropped the connection). This is go-mail's
// DialAndSendWithContext without those errors.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("send message to %s: %w", s, err)
	}
	// Built before the dial for its checks (an address that does not
	// parse connects to nobody), and built again for a server that does
	// not offer SMTPUTF8.
	now := s.now()
	msg, err := buildMsg(m, now, true)
	if err != nil {
		return fmt.Errorf("send message to %s: %w", s, err)
	}
	var dialed net.Conn
	c, err := s.client(ctx, &dialed)
	if err != nil {
		return fmt.Errorf("send message to %s: %w", s, err)
	}
	conn, err := c.DialToSMTPClientWithContext(ctx)
	if err != nil {
		if dialed != nil {
			// go-mail leaves the connection open when the exchange after
			// the greeting fails (EHLO and HELO refused, STARTTLS refused
			// or failed).
			_ = dialed.Close()
		}
		if s.noSTARTTLS(err) {
			return fmt.Errorf("send message to %s: %w (%w)", s, ErrSTARTTLSRequired, err)
		}
		return fmt.Errorf("send message to %s: dial: %w", s, ctxErr(ctx, err))
	}
	defer func() {
		// go-mail closes the connection only after a QUIT that
		// succeeded: after a server that hung (ctx's deadline past) or
		// dropped the connection, it is closed here.
		if err := c.CloseWithSMTPClient(conn); err != nil && dialed != nil {
			_ = dialed.Close()
		}
	}()
	if ok, _ := conn.Extension("SMTPUTF8"); !ok {
		// RFC 6531: without SMTPUTF8 the envelope and the header are
		// ASCII; a domain that is not goes as its A-labels.
		if msg, err = buildMsg(m, now, false); err != nil {
			return fmt.Errorf("send message to %s: %w", s, err)
		}
	}
	if err := c.SendWithSMTPClient(conn, msg); err != nil && !msg.IsDelivered() {
		err = withoutRecipient(err, m.To)
		if refusedForGood(err) {
			return fmt.Errorf("send message to %s: %w: %w", s, ErrRecipientRefused, err)
		}
		return fmt.Errorf("send message to %s: %w", s, ctxErr(ctx, err))
	}
	return nil
}

// noSTARTTLS reports whether err, of go-mail's dial, is its refusal to go
// on without STARTTLS (TLSRequired): go-mail's error has no type of its
// own (TestSMTPRequiredTLSRefusesAServerWithoutSTARTTLS pins its text).
func (s *SMTP) noSTARTTLS(err error) bool {
	return !s.implicit && s.tlsMode == TLSRequired && strings.Contains(err.Error(), "does not support STARTTLS")
}

// recipientPlaceholder replaces the recipient's address in send errors.
const recipientPlaceholder = "(the recipient)"

// withoutRecipient returns err with every mention of the address of to
// (any case) in its message replaced by recipientPlaceholder: go-mail's
// error of a refused RCPT TO lists the recipient ("affected
// recipient(s): <addr>"), and a server's reply often quotes it
// ("<addr>: Recipient address rejected"). The error goes to the task's
// last error and the worker's log, where a customer's address must not
// appear. An address at an internationalized domain is replaced as it is
// written in To and as its A-label form (asciiAddress), which a server
// without SMTPUTF8 got and quotes. The result wraps err (errors.As still
// finds go-mail's SendError).
func withoutRecipient(err error, to string) error {
	a, perr := parseRecipient(to)
	if perr != nil || a.Address == "" {
		return err
	}
	expr := regexp.QuoteMeta(a.Address)
	if ascii, aerr := asciiAddress(a); aerr == nil && ascii.Address != a.Address {
		expr += "|" + regexp.QuoteMeta(ascii.Address)
	}
	re := regexp.MustCompile("(?i)" + expr)
	msg := err.Error()
	if !re.MatchString(msg) {
		return err
	}
	return &redactedError{msg: re.ReplaceAllLiteralString(msg, recipientPlaceholder), err: err}
}

// redactedError is err with another message.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// refusedForGood reports whether err is the server's permanent refusal of
// the recipient: a 5xx reply to RCPT TO (550 no such mailbox, 553 mailbox
// name not allowed), except 552, which RFC 5321 (4.5.3.1.10) asks clients
// to treat as the temporary 452, and except a refusal of the sender rather
// than the address, which the server gives every recipient alike: 530
// (authentication required); an enhanced status code (RFC 3463) of class
// 5.7 (security or policy: "554 5.7.1 Relay access denied", a missing or
// wrong credential in SMTP_URL), of subject 5.5 (the delivery protocol:
// Postfix's "504 5.5.2 ... Helo command rejected: need fully-qualified
// hostname" to a worker whose host name has no dot, as a container's
// has, and "Sender address rejected: need fully-qualified address" to
// MAIL_FROM's default billing@localhost), or 5.1.7 and 5.1.8 (the sender's
// address: "550 5.1.8 ... Sender address rejected: Domain not found").
// Postfix checks the client, its HELO name and the sender at RCPT TO
// (smtpd_delay_reject, its default), so those come there. A 5.5.x reply
// that says "Recipient address rejected" is the address's refusal all the
// same: Postfix's reject_non_fqdn_recipient gives a customer's address
// whose domain has no dot (anna@gmailcom) the same "504 5.5.2" as the
// HELO name and the sender, naming what it refuses. A connection that
// failed during RCPT TO has no reply code and is not a refusal.
func refusedForGood(err error) bool {
	var se *mail.SendError
	if !errors.As(err, &se) || se.Reason != mail.ErrSMTPRcptTo {
		return false
	}
	code := se.ErrorCode()
	if code < 500 || code > 599 || code == 552 || code == 530 {
		return false
	}
	switch esc := se.EnhancedStatusCode(); {
	case strings.HasPrefix(esc, "5.5."):
		return strings.Contains(strings.ToLower(se.Error()), "recipient address rejected")
	case strings.HasPrefix(esc, "5.7."), esc == "5.1.7", esc == "5.1.8":
		return false
	}
	return true
}

// ctxErr adds ctx's error to err when ctx ended: an I/O timeout that
// ctxConn caused is then seen as the context's deadline or cancellation.
func ctxErr(ctx context.Context, err error) error {
	cerr := ctx.Err()
	if dl, ok := ctx.Deadline(); ok && cerr == nil && !time.Now().Before(dl) {
		cerr = context.DeadlineExceeded // the connection's deadline fired first
	}
	if cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w: %w", cerr, err)
	}
	return err
}

// dial returns the dial function of a client for one message: it connects
// (and, for smtps://, does the TLS handshake) with the dial's context, and
// wraps the connection so that it ends with ctx, the message's; it records
// the connection in *dialed, for Send to close when go-mail does not. It
// dials s's host and port itself: go-mail's address ("host:port") is
// malformed for an IPv6 host ("::1:587").
func (s *SMTP) dial(ctx context.Context, dialed *net.Conn) mail.DialContextFunc {
	return func(dctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		raw, err := d.DialContext(dctx, network, net.JoinHostPort(s.host, strconv.Itoa(s.port)))
		if err != nil {
			return nil, err
		}
		c := newCtxConn(ctx, raw)
		if !s.implicit {
			*dialed = c
			return c, nil
		}
		tc := tls.Client(c, &tls.Config{ServerName: s.host, MinVersion: mail.DefaultTLSMinVersion})
		if err := tc.HandshakeContext(dctx); err != nil {
			_ = c.Close()
			return nil, err
		}
		*dialed = tc
		return tc, nil
	}
}

// ctxConn is a connection that ends with a context: a deadline set on it
// (go-mail sets one per phase from its timeout) is cut to the context's,
// and the context's end (its deadline or its cancellation) makes every
// pending and later read and write fail at once. go-mail reads and writes
// without a context of its own once connected.
type ctxConn struct {
	net.Conn
	ctx  context.Context
	stop func() bool
}

// pastDeadline is a deadline already over: I/O fails at once.
var pastDeadline = time.Unix(1, 0)

func newCtxConn(ctx context.Context, conn net.Conn) *ctxConn {
	c := &ctxConn{Conn: conn, ctx: ctx}
	c.stop = context.AfterFunc(ctx, func() { _ = conn.SetDeadline(pastDeadline) })
	return c
}

// clamp returns t, or ctx's deadline when that comes first, or a past
// deadline once ctx ended (so a deadline set after the end cannot undo
// it). The zero t (no deadline) becomes ctx's deadline.
func (c *ctxConn) clamp(t time.Time) time.Time {
	if c.ctx.Err() != nil {
		return pastDeadline
	}
	if dl, ok := c.ctx.Deadline(); ok && (t.IsZero() || dl.Before(t)) {
		return dl
	}
	return t
}

func (c *ctxConn) SetDeadline(t time.Time) error      { return c.Conn.SetDeadline(c.clamp(t)) }
func (c *ctxConn) SetReadDeadline(t time.Time) error  { return c.Conn.SetReadDeadline(c.clamp(t)) }
func (c *ctxConn) SetWriteDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(c.clamp(t)) }

func (c *ctxConn) Close() error {
	c.stop()
	return c.Conn.Close()
}
