package mailer_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/invoicing/tenantworker/internal/mailer"
	"github.com/invoicing/tenantworker/internal/mailer/smtptest"
)

// TestSMTPPolicyRefusalAtRcptIsNotARecipientRefusal: a 5xx reply to RCPT
// TO that refuses the sender, not the address (an enhanced status code
// 5.7.x, security or policy, RFC 3463: Postfix's "554 5.7.1 Relay access
// denied" to a client that did not authenticate; "530 5.7.0
// Authentication required"), is not ErrRecipientRefused: it is what a
// missing or wrong credential in SMTP_URL gets for every recipient, and
// the reminders, archived at once with their day's rows failed, would not
// be sent that day once SMTP_URL is fixed. A 5.1.x (addressing: 550 5.1.1
// no such user) still is.
func TestSMTPPolicyRefusalAtRcptIsNotARecipientRefusal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		reply   *smtp.SMTPError
		refused bool
	}{
		{&smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Relay access denied"}, false},
		{&smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}, false},
		{smtptest.ErrNoMailbox, true},
	} {
		srv := smtptest.Start(t, smtptest.Options{RejectRcpt: func(string) error { return tc.reply }})
		s, err := mailer.NewSMTP(srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		err = s.Send(context.Background(), testMessage())
		if err == nil {
			t.Fatalf("%d %v: Send succeeded", tc.reply.Code, tc.reply.EnhancedCode)
		}
		if got := errors.Is(err, mailer.ErrRecipientRefused); got != tc.refused {
			t.Errorf("%d %v: Send = %v; wraps ErrRecipientRefused %v, want %v", tc.reply.Code, tc.reply.EnhancedCode, err, got, tc.refused)
		}
	}
}

// TestSMTPSenderOrHeloRefusalAtRcptIsNotARecipientRefusal: Postfix
// evaluates its client, HELO and sender restrictions at RCPT TO
// (smtpd_delay_reject, the default), so a refusal of the worker itself
// comes as a 5xx reply to RCPT TO for every recipient: a HELO name that is
// not fully qualified (os.Hostname(), a container's or pod's name:
// "504 5.5.2 <worker-7d9f>: Helo command rejected"), a MAIL_FROM that is
// not (the default billing@localhost: "504 5.5.2 ... Sender address
// rejected: need fully-qualified address") or whose domain does not
// resolve ("550 5.1.8 ... Sender address rejected: Domain not found").
// Such a refusal is not ErrRecipientRefused (RFC 3463: X.5.x is the
// delivery protocol's status, X.1.7 and X.1.8 the sender's address): it
// archived every reminder of the day at once as a refused recipient, rows
// failed, none sent that day once the setting was fixed.
func TestSMTPSenderOrHeloRefusalAtRcptIsNotARecipientRefusal(t *testing.T) {
	t.Parallel()
	for _, reply := range []*smtp.SMTPError{
		{Code: 504, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "<worker-7d9f>: Helo command rejected: need fully-qualified hostname"},
		{Code: 504, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "<billing@localhost>: Sender address rejected: need fully-qualified address"},
		{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 8}, Message: "<billing@example.invalid>: Sender address rejected: Domain not found"},
		{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "<billing@example.com>: Sender address rejected: bad sender address syntax"},
	} {
		srv := smtptest.Start(t, smtptest.Options{RejectRcpt: func(string) error { return reply }})
		s, err := mailer.NewSMTP(srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		err = s.Send(context.Background(), testMessage())
		if err == nil {
			t.Fatalf("%d %v: Send succeeded", reply.Code, reply.EnhancedCode)
		}
		if errors.Is(err, mailer.ErrRecipientRefused) {
			t.Errorf("%d %v %s: Send = %v; wraps ErrRecipientRefused, want a retried error", reply.Code, reply.EnhancedCode, reply.Message, err)
		}
	}
}

// TestSMTPNonFQDNRecipientIsARecipientRefusal: Postfix's
// reject_non_fqdn_recipient refuses the address itself with the same
// 504 5.5.2 as its refusals of the HELO name and the sender ("<anna@gmailcom>:
// Recipient address rejected: need fully-qualified address", a customer's
// address whose domain lost its dot): that one is ErrRecipientRefused, the
// reminder archived at once, not retried ten times to the same refusal.
// The other 5.5.x replies stay retried
// (TestSMTPSenderOrHeloRefusalAtRcptIsNotARecipientRefusal).
func TestSMTPNonFQDNRecipientIsARecipientRefusal(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{RejectRcpt: func(to string) error {
		return &smtp.SMTPError{Code: 504, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
			Message: "<" + to + ">: Recipient address rejected: need fully-qualified address"}
	}})
	s, err := mailer.NewSMTP(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	m := testMessage()
	m.To = "Anna <anna@gmailcom>"
	err = s.Send(context.Background(), m)
	if !errors.Is(err, mailer.ErrRecipientRefused) {
		t.Fatalf("Send = %v; want ErrRecipientRefused", err)
	}
	if strings.Contains(err.Error(), "anna@") {
		t.Errorf("Send = %v; names the recipient's address", err)
	}
}
