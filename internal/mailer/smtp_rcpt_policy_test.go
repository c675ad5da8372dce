package mailer_test

import (
	"context"
	"errors"
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
