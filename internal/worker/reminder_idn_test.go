package worker_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/mailer"
	"github.com/invoicing/tenantworker/internal/mailer/smtptest"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/internal/worker/workertest"
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

// TestReminderToANonASCIILocalPartWithoutSMTPUTF8IsArchivedAtOnce: a
// customer whose address's local part is not ASCII (zoë@example.com),
// through a mail server that does not offer SMTPUTF8, cannot be sent to:
// the reminder is archived at once (no ten retries) with the reason
// (mailer.ErrRecipientNeedsSMTPUTF8, not the mail server's refusal of the
// recipient, which it never saw), its day's row failed, and neither the
// task's error nor the log names the address. Through a server that
// offers SMTPUTF8 it is sent. It went out in raw UTF-8: refused by the
// server (553 5.6.7) and archived as a recipient that server refused for
// good.
func TestReminderToANonASCIILocalPartWithoutSMTPUTF8IsArchivedAtOnce(t *testing.T) {
	t.Parallel()
	plain := smtptest.Start(t, smtptest.Options{})
	var m swappableMailer
	m.use(smtpMailer(t, plain))
	e := newHandlerEnv(t, &m)
	var logs bytes.Buffer
	w := workertest.New(e.h, worker.MuxOptions{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	acme := e.provision(t, "acme", "Acme")
	c := acmeCustomer
	c.Email = "Zoë <zoë@example.com>"
	id := e.addInvoice(t, acme, c, overdueInvoice("ACME-1"))
	p := tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"}
	e.setToday(t, p.Day)

	err := w.Work(e.ctx, p)
	if !errors.Is(err, asynq.SkipRetry) || !errors.Is(err, mailer.ErrRecipientNeedsSMTPUTF8) || errors.Is(err, mailer.ErrRecipientRefused) {
		t.Fatalf("reminder to zoë@example.com without SMTPUTF8 = %v, want a permanent error wrapping ErrRecipientNeedsSMTPUTF8 alone", err)
	}
	for _, s := range []string{"zoë", "zo\\u00eb", "@example.com"} {
		if strings.Contains(err.Error(), s) || strings.Contains(logs.String(), s) {
			t.Errorf("task error or log names %q: %v\n%s", s, err, logs.String())
		}
	}
	if n := plain.Attempts(); n != 0 {
		t.Errorf("server without SMTPUTF8 saw %d messages, want none", n)
	}
	if rows := e.reminderRows(t, acme, id); len(rows) != 1 || rows[0].Status != "failed" {
		t.Errorf("reminder rows %+v, want one failed row", rows)
	}

	utf8 := smtptest.Start(t, smtptest.Options{SMTPUTF8: true})
	m.use(smtpMailer(t, utf8))
	if err := w.Work(e.ctx, p); err != nil {
		t.Fatalf("reminder to zoë@example.com through a server offering SMTPUTF8: %v", err)
	}
	if msgs := utf8.Messages(); len(msgs) != 1 || len(msgs[0].To) != 1 || msgs[0].To[0] != "zoë@example.com" {
		t.Errorf("server offering SMTPUTF8 got %+v, want one message to zoë@example.com", msgs)
	}
}
