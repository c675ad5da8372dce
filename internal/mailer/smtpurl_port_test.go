package mailer_test

import (
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/mailer"
)

// TestNewSMTPBadPortHidesPassword: an unencoded '#', '?' or '/' in
// SMTP_URL's password ends the authority there, and the password's digits
// before it become the port ("billing:98765432" is host billing, port
// 98765432). A port out of range is refused without quoting it: it may be
// the start of the password.
func TestNewSMTPBadPortHidesPassword(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"smtp://billing:98765432#xyz@mail.example.com:587",
		"smtp://billing:98765432/xyz@mail.example.com:587",
		"smtps://billing:98765432?xyz@mail.example.com:465",
	} {
		_, err := mailer.NewSMTP(in)
		if err == nil {
			t.Errorf("NewSMTP with a password holding an unencoded reserved character: accepted")
			continue
		}
		if strings.Contains(err.Error(), "98765432") {
			t.Errorf("NewSMTP error quotes the start of the password: %v", err)
		}
	}
}
