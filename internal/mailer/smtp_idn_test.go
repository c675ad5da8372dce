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

// TestSMTPSendsInternationalizedDomainsAsALabels: a customer at an
// internationalized domain (info@müller.de) and a MAIL_FROM on one
// (billing@bücher.example) get a reminder through a server that does not
// offer SMTPUTF8, as most relays do not: each domain goes as its A-label
// (RFC 5890/5891, IDNA2008) in MAIL FROM, RCPT TO and the From and To
// headers, the display names as they are. go-mail sent them in raw UTF-8,
// which such a server refuses (Postfix: 553 5.6.7 Must declare SMTPUTF8 to
// send unicode address): every reminder failed at MAIL FROM, and a
// reminder to such a customer was archived as a recipient refused for good
// and never sent. A server that offers SMTPUTF8 gets them as they are.
func TestSMTPSendsInternationalizedDomainsAsALabels(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		smtputf8           bool
		from, to           string // envelope
		fromHeader, toHead string // header addresses
	}{
		{false, "billing@xn--bcher-kva.example", "info@xn--mller-kva.de", "billing@xn--bcher-kva.example", "info@xn--mller-kva.de"},
		{true, "billing@bücher.example", "info@müller.de", "billing@bücher.example", "info@müller.de"},
	} {
		srv := smtptest.Start(t, smtptest.Options{SMTPUTF8: tc.smtputf8})
		s, err := mailer.NewSMTP(srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		m := testMessage()
		m.From = "Bücher Rechnungen <billing@bücher.example>"
		m.To = "Zoë Müller <info@müller.de>"
		if err := s.Send(context.Background(), m); err != nil {
			t.Fatalf("SMTPUTF8 %v: Send: %v", tc.smtputf8, err)
		}
		msgs := srv.Messages()
		if len(msgs) != 1 {
			t.Fatalf("SMTPUTF8 %v: server received %d messages, want 1", tc.smtputf8, len(msgs))
		}
		got := msgs[0]
		if got.From != tc.from || len(got.To) != 1 || got.To[0] != tc.to {
			t.Errorf("SMTPUTF8 %v: envelope from %q to %q, want %q to [%q]", tc.smtputf8, got.From, got.To, tc.from, tc.to)
		}
		p := parseMessage(t, got.Data)
		for _, h := range []struct{ key, name, addr string }{
			{"From", "Bücher Rechnungen", tc.fromHeader},
			{"To", "Zoë Müller", tc.toHead},
		} {
			a, err := p.header.AddressList(h.key)
			if err != nil || len(a) != 1 || a[0].Name != h.name || a[0].Address != h.addr {
				t.Errorf("SMTPUTF8 %v: %s = %v (%v), want %q <%s>", tc.smtputf8, h.key, a, err, h.name, h.addr)
			}
			if raw := p.header.Get(h.key); !tc.smtputf8 && !isASCII(raw) {
				t.Errorf("SMTPUTF8 %v: raw %s %q is not ASCII", tc.smtputf8, h.key, raw)
			}
		}
	}
}

// TestSMTPRefusesAnInvalidInternationalizedDomain: a customer's domain
// that IDNA2008's lookup rules (RFC 5891, idna.Lookup) do not allow (a
// label with "--" in its third and fourth places, a zero-width joiner out
// of its context, a label that starts with a combining mark, a
// right-to-left label mixing directions) is ErrBadRecipient before
// anything is sent, for CheckRecipient as for Send, saying so without
// quoting the address; a MAIL_FROM on such a domain is refused by
// CheckSender (the worker does not start). They were sent in raw UTF-8.
func TestSMTPRefusesAnInvalidInternationalizedDomain(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{SMTPUTF8: true})
	s, err := mailer.NewSMTP(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"info@ab--cü.example", "info@a\u200db.müller.de", "info@\u0301ü.de", "info@ü.\u05d0a.de"} {
		if err := mailer.CheckRecipient(addr); !errors.Is(err, mailer.ErrBadRecipient) {
			t.Errorf("CheckRecipient(%q) = %v, want ErrBadRecipient", addr, err)
		}
		m := testMessage()
		m.To = addr
		err := s.Send(context.Background(), m)
		if !errors.Is(err, mailer.ErrBadRecipient) || !strings.Contains(err.Error(), "internationalized domain name") {
			t.Errorf("Send to %q = %v, want ErrBadRecipient saying the domain is not a valid internationalized domain name", addr, err)
		} else if _, domain, _ := strings.Cut(addr, "@"); strings.Contains(err.Error(), domain) {
			t.Errorf("Send to %q = %v: quotes the address", addr, err)
		}
		if err := mailer.CheckSender("billing@" + strings.SplitN(addr, "@", 2)[1]); err == nil {
			t.Errorf("CheckSender on the domain of %q succeeded", addr)
		}
	}
	if n := srv.Attempts(); n != 0 {
		t.Errorf("server saw %d messages, want none", n)
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// TestSMTPRefusalOfAnALabelAddressDoesNotNameIt: a server without
// SMTPUTF8 that refuses a customer at an internationalized domain quotes
// the address as it got it, with the domain's A-label
// (<info@xn--mller-kva.de>: Recipient address rejected); the send's error
// names the address in neither form, as for any other address.
func TestSMTPRefusalOfAnALabelAddressDoesNotNameIt(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{RejectRcpt: func(to string) error {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<" + to + ">: Recipient address rejected: User unknown"}
	}})
	s, err := mailer.NewSMTP(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	m := testMessage()
	m.To = "Info@Müller.de"
	err = s.Send(context.Background(), m)
	if !errors.Is(err, mailer.ErrRecipientRefused) {
		t.Fatalf("Send = %v, want ErrRecipientRefused", err)
	}
	for _, s := range []string{"xn--mller-kva", "müller", "info@"} {
		if strings.Contains(strings.ToLower(err.Error()), s) {
			t.Errorf("Send = %v: names %q", err, s)
		}
	}
}
