// Package smtptest runs a real SMTP server (github.com/emersion/go-smtp) on
// a loopback port for tests: it records every message it accepts, can
// require AUTH PLAIN, and can reject chosen delivery attempts with a
// temporary failure to exercise retries.
package smtptest

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Options configures a Server.
type Options struct {
	// User and Password, when User is set, are the only credentials
	// accepted; MAIL FROM without AUTH is then refused.
	User     string
	Password string
	// Reject, when set, is called with the 1-based number of each DATA
	// attempt; a non-nil result refuses that message (it is not recorded).
	Reject func(attempt int) error
	// RejectRcpt, when set, is called with each RCPT TO address; a
	// non-nil result (an *smtp.SMTPError: its code is the reply) refuses
	// that recipient.
	RejectRcpt func(to string) error
	// DropAfterAccept closes the connection right after a message was
	// accepted (the 250 reply to its end of DATA is sent), as a relay or
	// network failing at that moment does: the client's next command
	// (RSET, QUIT) fails.
	DropAfterAccept bool
	// Stall, when set, holds every message's end of DATA without a reply
	// until it is closed, as a slow or hung relay does: the client waits
	// for the verdict on a message the server has. Close it before the
	// test ends (a t.Cleanup registered after Start runs first).
	Stall <-chan struct{}
	// StallAfterAccept, when set, holds the connection after a message
	// was accepted (the 250 reply to its end of DATA is sent) until it is
	// closed, as a relay that hangs right after taking a message does: the
	// client's next command (RSET, QUIT) gets no reply. Close it before
	// the test ends (a t.Cleanup registered after Start runs first).
	StallAfterAccept <-chan struct{}
	// TLS, when set, is offered with STARTTLS (or, with Implicit, spoken
	// from the first byte, as smtps:// expects).
	TLS      *tls.Config
	Implicit bool
	// Host is the loopback address to listen on: 127.0.0.1 when empty
	// (::1 for an IPv6 server).
	Host string
	// SMTPUTF8 offers the SMTPUTF8 extension (RFC 6531). Whether it is
	// offered or not, an address in MAIL FROM or RCPT TO that is not
	// ASCII is refused (ErrUnicodeAddress) unless MAIL FROM declared
	// SMTPUTF8, as an RFC 6531 server such as Postfix does.
	SMTPUTF8 bool
}

// ErrTemporary is a 451 reply, the usual "try again later".
var ErrTemporary = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "temporary failure, try again"}

// ErrNoMailbox is a 550 reply to RCPT TO: the recipient does not exist.
var ErrNoMailbox = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user here"}

// ErrMailboxFull is a 552 reply to RCPT TO, which RFC 5321 (4.5.3.1.10)
// asks clients to treat as the temporary 452.
var ErrMailboxFull = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "mailbox full"}

// ErrUnicodeAddress is the reply to an address in MAIL FROM or RCPT TO
// that is not ASCII, in a transaction whose MAIL FROM did not declare
// SMTPUTF8: Postfix's.
var ErrUnicodeAddress = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7}, Message: "Must declare SMTPUTF8 to send unicode address"}

// Message is one accepted message.
type Message struct {
	From string
	To   []string
	// Data is the message as received (RFC 5322, CRLF line endings).
	Data []byte
	// TLS reports whether the message (and the AUTH before it) came over
	// TLS (STARTTLS or implicit).
	TLS bool
	// SMTPUTF8 reports whether its MAIL FROM declared SMTPUTF8.
	SMTPUTF8 bool
}

// Server is a running SMTP server. Its methods are safe for concurrent use.
type Server struct {
	opts Options
	srv  *smtp.Server
	addr string

	mu       sync.Mutex
	attempts int
	messages []Message
}

// Start starts a server on 127.0.0.1:0 (Options.Host's port 0) and stops
// it in t.Cleanup.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{opts: opts}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{s: s, conn: c}, nil
	}))
	s.srv.Domain = "localhost"
	s.srv.AllowInsecureAuth = true
	s.srv.ReadTimeout = 30 * time.Second
	s.srv.WriteTimeout = 30 * time.Second
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.TLSConfig = opts.TLS
	s.srv.EnableSMTPUTF8 = opts.SMTPUTF8
	host := opts.Host
	if host == "" {
		host = "127.0.0.1"
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("smtptest: listen: %v", err)
	}
	if opts.Implicit {
		if opts.TLS == nil {
			t.Fatal("smtptest: Implicit without TLS")
		}
		l = tls.NewListener(l, opts.TLS)
	}
	s.addr = l.Addr().String()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.srv.Serve(l)
	}()
	t.Cleanup(func() {
		// Close the listener directly too: Serve may not have registered
		// it with the server yet.
		_ = s.srv.Close()
		_ = l.Close()
		<-done
	})
	return s
}

// Addr returns the server's "127.0.0.1:port" (or "[::1]:port").
func (s *Server) Addr() string { return s.addr }

// URL returns smtp://[user:pass@]127.0.0.1:port (its Addr; smtps:// with
// Options.Implicit) for mailer.NewSMTP.
func (s *Server) URL() string {
	u := url.URL{Scheme: "smtp", Host: s.addr}
	if s.opts.Implicit {
		u.Scheme = "smtps"
	}
	if s.opts.User != "" {
		u.User = url.UserPassword(s.opts.User, s.opts.Password)
	}
	return u.String()
}

// Port returns the server's port.
func (s *Server) Port() int {
	_, p, _ := net.SplitHostPort(s.addr)
	n, _ := strconv.Atoi(p)
	return n
}

// Messages returns a copy of the accepted messages in arrival order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// Attempts returns how many messages were offered (DATA commands),
// accepted or rejected.
func (s *Server) Attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts
}

// session is one SMTP connection.
type session struct {
	s        *Server
	conn     *smtp.Conn
	authed   bool
	utf8     bool // MAIL FROM declared SMTPUTF8
	from     string
	to       []string
	accepted bool // a message was accepted since the last Reset
}

var errBadCredentials = errors.New("invalid username or password")

// AuthMechanisms implements smtp.AuthSession.
func (ss *session) AuthMechanisms() []string {
	if ss.s.opts.User == "" {
		return nil
	}
	return []string{sasl.Plain}
}

// Auth implements smtp.AuthSession.
func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.s.opts.User == "" || mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != ss.s.opts.User || pass != ss.s.opts.Password {
			return errBadCredentials
		}
		ss.authed = true
		return nil
	}), nil
}

// Mail implements smtp.Session; it requires AUTH when a user is set, and
// SMTPUTF8 declared for an address that is not ASCII.
func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	if ss.s.opts.User != "" && !ss.authed {
		return smtp.ErrAuthRequired
	}
	ss.utf8 = opts != nil && opts.UTF8
	if !ss.utf8 && !ascii(from) {
		return ErrUnicodeAddress
	}
	ss.from = from
	return nil
}

// Rcpt implements smtp.Session; it refuses an address that is not ASCII
// unless MAIL FROM declared SMTPUTF8, and applies Options.RejectRcpt.
func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if !ss.utf8 && !ascii(to) {
		return ErrUnicodeAddress
	}
	if ss.s.opts.RejectRcpt != nil {
		if err := ss.s.opts.RejectRcpt(to); err != nil {
			return err
		}
	}
	ss.to = append(ss.to, to)
	return nil
}

// ascii reports whether s is all ASCII.
func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// Data implements smtp.Session: it counts the attempt, applies
// Options.Reject and records an accepted message.
func (ss *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if ss.s.opts.Stall != nil {
		<-ss.s.opts.Stall
	}
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	ss.s.attempts++
	if ss.s.opts.Reject != nil {
		if err := ss.s.opts.Reject(ss.s.attempts); err != nil {
			return err
		}
	}
	_, overTLS := ss.conn.TLSConnectionState()
	ss.s.messages = append(ss.s.messages, Message{From: ss.from, To: append([]string(nil), ss.to...), Data: data, TLS: overTLS, SMTPUTF8: ss.utf8})
	ss.accepted = true
	return nil
}

// Reset implements smtp.Session; the server calls it after every message
// too, once its reply is sent, which is where Options.DropAfterAccept
// drops the connection and Options.StallAfterAccept holds it.
func (ss *session) Reset() {
	ss.from, ss.to, ss.utf8 = "", nil, false
	if ss.accepted && ss.s.opts.StallAfterAccept != nil {
		<-ss.s.opts.StallAfterAccept
	}
	if ss.accepted && ss.s.opts.DropAfterAccept {
		_ = ss.conn.Conn().Close() // not Conn.Close: it waits for the lock this call runs under
	}
	ss.accepted = false
}

// Logout implements smtp.Session.
func (ss *session) Logout() error { return nil }
