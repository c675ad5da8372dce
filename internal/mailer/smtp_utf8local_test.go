package mailer_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/mailer"
	"github.com/invoicing/tenantworker/internal/mailer/smtptest"
)

// TestSMTPNonASCIILocalPartNeedsSMTPUTF8: an address whose local part is
// not ASCII (zoë@example.com) has no ASCII form: a server that offers
// SMTPUTF8 gets it as it is (MAIL FROM declares SMTPUTF8), and a server
// that does not gets nothing, not even MAIL FROM: the send fails with
// ErrRecipientNeedsSMTPUTF8 (not ErrRecipientRefused: the server refused
// nothing), without naming the address. go-mail sent it in raw UTF-8,
// which a server keeping to RFC 6531 refuses (553 5.6.7), taken for a
// refusal of the recipient by the server, and a lenient one passes on
// unannounced.
func TestSMTPNonASCIILocalPartNeedsSMTPUTF8(t *testing.T) {
	t.Parallel()
	m := testMessage()
	m.To = "Zoë <zoë@müller.de>"

	plain := smtptest.Start(t, smtptest.Options{})
	s, err := mailer.NewSMTP(plain.URL())
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(context.Background(), m)
	if !errors.Is(err, mailer.ErrRecipientNeedsSMTPUTF8) || errors.Is(err, mailer.ErrRecipientRefused) || errors.Is(err, mailer.ErrBadRecipient) {
		t.Errorf("Send through a server without SMTPUTF8 = %v, want ErrRecipientNeedsSMTPUTF8 alone", err)
	}
	if err != nil {
		for _, s := range []string{"zoë", "zo", "müller", "xn--mller-kva"} {
			if strings.Contains(strings.ToLower(err.Error()), s) {
				t.Errorf("Send = %v: names %q", err, s)
			}
		}
	}
	if n := plain.Attempts(); n != 0 {
		t.Errorf("server without SMTPUTF8 saw %d messages, want none", n)
	}

	utf8 := smtptest.Start(t, smtptest.Options{SMTPUTF8: true})
	if s, err = mailer.NewSMTP(utf8.URL()); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), m); err != nil {
		t.Fatalf("Send through a server offering SMTPUTF8: %v", err)
	}
	msgs := utf8.Messages()
	if len(msgs) != 1 || len(msgs[0].To) != 1 || msgs[0].To[0] != "zoë@müller.de" || !msgs[0].SMTPUTF8 {
		t.Fatalf("server offering SMTPUTF8 got %+v, want one message to zoë@müller.de with SMTPUTF8 declared", msgs)
	}
	if to, err := parseMessage(t, msgs[0].Data).header.AddressList("To"); err != nil || len(to) != 1 || to[0].Name != "Zoë" || to[0].Address != "zoë@müller.de" {
		t.Errorf("To = %v (%v), want Zoë <zoë@müller.de>", to, err)
	}
}

// TestSMTPNonASCIISenderLocalPartNeedsSMTPUTF8: a MAIL_FROM whose local
// part is not ASCII (rechnungsstelle-zoë@example.com) cannot go to a
// server without SMTPUTF8 either: the send fails before MAIL FROM with an
// ordinary error saying so (retried: the setting, or the server, is at
// fault, not the customer's address), not ErrRecipientNeedsSMTPUTF8 or
// ErrRecipientRefused, which would archive the reminder as the
// customer's.
func TestSMTPNonASCIISenderLocalPartNeedsSMTPUTF8(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{})
	s, err := mailer.NewSMTP(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	m := testMessage()
	m.From = "Rechnungen <rechnungsstelle-zoë@example.com>"
	m.To = "zoë@example.org" // the sender's problem comes first
	err = s.Send(context.Background(), m)
	if err == nil || errors.Is(err, mailer.ErrRecipientNeedsSMTPUTF8) || errors.Is(err, mailer.ErrRecipientRefused) || errors.Is(err, mailer.ErrBadRecipient) ||
		!strings.Contains(err.Error(), "SMTPUTF8") || !strings.Contains(err.Error(), "sender") {
		t.Errorf("Send = %v, want an ordinary error saying the sender's local part needs SMTPUTF8", err)
	}
	if n := srv.Attempts(); n != 0 {
		t.Errorf("server saw %d messages, want none", n)
	}
}
