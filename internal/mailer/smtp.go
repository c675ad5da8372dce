package mailer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
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
	timeout  time.Duration
	now      func() time.Time
}

// SMTP implements Mailer.
var _ Mailer = (*SMTP)(nil)

// NewSMTP parses smtpURL and returns a mailer for it:
//
//	smtp://[user:pass@]host[:port]   STARTTLS when the server offers it (port 587 by default)
//	smtps://[user:pass@]host[:port]  implicit TLS (port 465 by default)
//
// Credentials, when a user is given, are sent with AUTH PLAIN, which go-mail
// only does over TLS or to a loopback host (localhost, 127.0.0.1, ::1).
// User and password may be percent-encoded.
func NewSMTP(smtpURL string) (*SMTP, error) {
	u, err := url.Parse(smtpURL)
	if err != nil {
		// url.Parse's error quotes the URL, password included.
		return nil, errors.New("new smtp mailer: malformed SMTP URL")
	}
	s := &SMTP{host: u.Hostname(), timeout: 30 * time.Second, now: time.Now}
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
			return nil, fmt.Errorf("new smtp mailer: bad port %q", p)
		}
		s.port = n
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("new smtp mailer: unexpected path %q in SMTP URL", u.Path)
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

// client returns a new go-mail client for one message.
func (s *SMTP) client() (*mail.Client, error) {
	opts := []mail.Option{mail.WithPort(s.port), mail.WithTimeout(s.timeout)}
	if s.implicit {
		opts = append(opts, mail.WithSSL())
	} else {
		opts = append(opts, mail.WithTLSPolicy(mail.TLSOpportunistic))
	}
	if s.user != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthPlain),
			mail.WithUsername(s.user), mail.WithPassword(s.pass))
	}
	return mail.NewClient(s.host, opts...)
}

// Send submits m. It dials with ctx, so a cancelled ctx stops a send that
// has not connected yet. A nil error means the server accepted the message
// (its reply to the end of DATA): an error after that (the RSET go-mail
// sends after each message, the QUIT that closes the connection) is
// ignored, because reporting it would make the caller send the accepted
// message again. This is go-mail's DialAndSendWithContext without those
// errors.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("send message to %s: %w", s, err)
	}
	msg, err := buildMsg(m, s.now())
	if err != nil {
		return fmt.Errorf("send message to %s: %w", s, err)
	}
	c, err := s.client()
	if err != nil {
		return fmt.Errorf("send message to %s: %w", s, err)
	}
	conn, err := c.DialToSMTPClientWithContext(ctx)
	if err != nil {
		return fmt.Errorf("send message to %s: dial: %w", s, err)
	}
	defer func() { _ = c.CloseWithSMTPClient(conn) }()
	if err := c.SendWithSMTPClient(conn, msg); err != nil && !msg.IsDelivered() {
		return fmt.Errorf("send message to %s: %w", s, err)
	}
	return nil
}
