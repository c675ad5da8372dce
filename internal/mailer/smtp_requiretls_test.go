package mailer_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/mailer"
	"github.com/invoicing/tenantworker/internal/mailer/smtptest"
)

// TestSMTPRequiredTLSRefusesAServerWithoutSTARTTLS: with SMTP_TLS=required
// (mailer.TLSRequired) a server that does not offer STARTTLS, or a proxy
// that hides it, gets no MAIL FROM (nor AUTH, even on a loopback host,
// where go-mail would send credentials in clear): the send fails with
// ErrSTARTTLSRequired, which says what to fix; the default mode sends to
// the same server in clear, as before.
func TestSMTPRequiredTLSRefusesAServerWithoutSTARTTLS(t *testing.T) {
	t.Parallel()
	for _, creds := range []string{"", "app:s3cret@"} {
		name := "without credentials"
		if creds != "" {
			name = "with credentials to localhost"
		}
		t.Run(name, func(t *testing.T) {
			f := startFakeSMTP(t, "127.0.0.1", false, false)
			s, err := mailer.NewSMTP("smtp://"+creds+f.addr, mailer.WithTLSMode(mailer.TLSRequired))
			if err != nil {
				t.Fatal(err)
			}
			err = s.Send(t.Context(), testMessage())
			if !errors.Is(err, mailer.ErrSTARTTLSRequired) || !strings.Contains(err.Error(), "SMTP_TLS=required") {
				t.Fatalf("Send to a server without STARTTLS = %v, want ErrSTARTTLSRequired", err)
			}
			if f.saw("AUTH") || f.saw("MAIL") || f.saw("DATA") {
				t.Fatalf("the server got %v", f.lines)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error quotes the password: %v", err)
			}
			t.Logf("error: %v", err)
		})
	}
	t.Run("opportunistic sends in clear", func(t *testing.T) {
		srv := smtptest.Start(t, smtptest.Options{})
		s, err := mailer.NewSMTP(srv.URL(), mailer.WithTLSMode(mailer.TLSOpportunistic))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(t.Context(), testMessage()); err != nil {
			t.Fatalf("Send: %v", err)
		}
		if msgs := srv.Messages(); len(msgs) != 1 || msgs[0].TLS {
			t.Fatalf("got %d messages, want 1 in clear text", len(msgs))
		}
	})
}

// TestParseTLSMode: SMTP_TLS takes opportunistic (the default) or
// required, in any case; anything else is an error naming both, and
// NewSMTP refuses a mode it does not know.
func TestParseTLSMode(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]mailer.TLSMode{"": mailer.TLSOpportunistic, "opportunistic": mailer.TLSOpportunistic, " Required ": mailer.TLSRequired} {
		if got, err := mailer.ParseTLSMode(in); err != nil || got != want {
			t.Errorf("ParseTLSMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"starttls", "tls", "yes"} {
		if _, err := mailer.ParseTLSMode(in); err == nil || !strings.Contains(err.Error(), "required") {
			t.Errorf("ParseTLSMode(%q) = %v, want an error naming the modes", in, err)
		}
	}
	if _, err := mailer.NewSMTP("smtp://mail.example.com", mailer.WithTLSMode("always")); err == nil {
		t.Error(`NewSMTP with TLS mode "always" succeeded`)
	}
	// The configuration's modes (config does not import the mailer) are
	// these, the default first.
	if want := []string{string(mailer.TLSOpportunistic), string(mailer.TLSRequired)}; !slices.Equal(config.SMTPTLSModes, want) {
		t.Errorf("config.SMTPTLSModes = %q, want %q", config.SMTPTLSModes, want)
	}
}
