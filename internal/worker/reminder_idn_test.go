package worker_test

import (
	"testing"

	"github.com/invoicing/tenantworker/internal/mailer/smtptest"
	"github.com/invoicing/tenantworker/tasks"
)

// TestReminderToAnInternationalizedDomainIsSent: through a mail server
// that does not offer SMTPUTF8 (most relays; smtptest refuses a non-ASCII
// address then, as Postfix does), a reminder to a customer at an
// internationalized domain (info@müller.de) is sent to its A-label
// (info@xn--mller-kva.de), and so is one from a MAIL_FROM on such a domain
// (rechnungen@bücher.example). Sent in raw UTF-8, the first was refused at
// RCPT TO (553 5.6.7), taken for a recipient refused for good: archived at
// once, its day's row failed, the customer never reminded; the second was
// refused at MAIL FROM, like every reminder of that worker, ten times
// each.
func TestReminderToAnInternationalizedDomainIsSent(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	acme := e.provision(t, "acme", "Acme")
	c := acmeCustomer
	c.Email = "Zoë Müller <info@müller.de>"
	e.setToday(t, "2026-03-01")
	for i, from := range []struct{ mailFrom, envelope string }{
		{testMailFrom, "billing@invoices.example"},
		{"Rechnungen <rechnungen@bücher.example>", "rechnungen@xn--bcher-kva.example"},
	} {
		e.h.MailFrom = from.mailFrom
		id := e.addInvoice(t, acme, c, overdueInvoice("ACME-"+string(rune('1'+i))))
		if err := e.work(tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"}); err != nil {
			t.Fatalf("reminder to info@müller.de from %s: %v", from.mailFrom, err)
		}
		if rows := e.reminderRows(t, acme, id); len(rows) != 1 || rows[0].Status != "sent" {
			t.Errorf("from %s: reminder rows %+v, want one sent row", from.mailFrom, rows)
		}
		msgs := srv.Messages()
		if len(msgs) != i+1 {
			t.Fatalf("server has %d messages, want %d", len(msgs), i+1)
		}
		if got := msgs[i]; got.From != from.envelope || len(got.To) != 1 || got.To[0] != "info@xn--mller-kva.de" {
			t.Errorf("envelope from %q to %q, want %q to [info@xn--mller-kva.de]", got.From, got.To, from.envelope)
		}
	}
}
