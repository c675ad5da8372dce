package mailer_test

import (
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/mailer"
)

// TestNewSMTPPasswordWithReservedCharacters: a password written into
// SMTP_URL without percent-encoding its '#' or '/' (common in generated
// passwords) must not make NewSMTP accept a different server (the part
// after '#' becomes a fragment, "user:1234" the host and port, and no
// credentials are sent), nor put the rest of the password into the
// start-up error.
func TestNewSMTPPasswordWithReservedCharacters(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"smtp://billing:1234#5678secret@mail.example.com:587",
		"smtp://billing:1234?5678secret@mail.example.com:587",
		"smtp://billing:12345/678secret@mail.example.com:587",
	} {
		s, err := mailer.NewSMTP(in)
		if err == nil {
			t.Errorf("NewSMTP(%q) = %s, want an error (the URL names another server than mail.example.com)", in, s)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("NewSMTP(%q) error leaks the password: %v", in, err)
		}
	}
}
