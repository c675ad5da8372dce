package worker_test

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/mailer"
	"github.com/invoicing/tenantworker/internal/mailer/smtptest"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/tasks"
)

// TestReminderAttachesTheInvoiceAsItIsNow: a reminder attaches the
// invoice as the email describes it. The PDF was rendered while the
// invoice was "sent"; the app then credited part of a line and the sweep
// marked the invoice overdue. The email's "Amount due" is the new total,
// and the attached document must show that total and status too, not the
// stale render's.
func TestReminderAttachesTheInvoiceAsItIsNow(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	acme := e.provision(t, "acme", "Acme Invoicing Ltd")
	id := e.addInvoice(t, acme, acmeCustomer, acmeInvoice) // sent, due 2026-02-04
	if err := e.work(tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id}); err != nil {
		t.Fatal(err)
	}
	stale := pdfToText(t, e.readDocument(t, acme, invoice.DocumentKey(id)))
	if !strings.Contains(stale, "1,331.74") {
		t.Fatalf("rendered PDF lacks the total 1,331.74:\n%s", stale)
	}
	// The app edits the invoice after the render: travel expenses 171.75 -> 71.75.
	e.inTenant(t, acme, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE line_items SET unit_price = 71.75 WHERE invoice_id = $1 AND description = 'Travel expenses'`, id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE invoices SET amount = 1231.74 WHERE id = $1`, id)
		return err
	})

	e.setToday(t, "2026-03-01")
	if err := e.work(tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"}); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	m := parseMail(t, msgs[0].Data)
	if !strings.Contains(m.Text, "Amount due: EUR 1,231.74") {
		t.Fatalf("mail text lacks the new total:\n%s", m.Text)
	}
	att, ok := m.Attachments["invoice-ACME-2026-0001.pdf"]
	if !ok {
		t.Fatalf("no attachment; attachments %v", keys(m.Attachments))
	}
	text := pdfToText(t, att)
	if !strings.Contains(text, "1,231.74") || strings.Contains(text, "1,331.74") {
		t.Errorf("the attached PDF does not show the amount the email asks for (EUR 1,231.74):\n%s", text)
	}
	if !strings.Contains(text, "overdue") {
		t.Errorf("the attached PDF does not show the invoice as overdue:\n%s", text)
	}
}

// TestReminderAttachmentKeepsNonASCIINumber: the reminder of an invoice
// numbered "RE-Müller/東京-7" (customer "Zoë Müller") names its PDF after
// that number as the customer reads it: a reader that understands RFC 2231
// (Go's mime/multipart) decodes "invoice-RE-Müller_東京-7.pdf", and one
// that does not finds a readable ASCII filename="..." beside it. The name
// was built byte by byte, so each UTF-8 byte became '_'
// ("invoice-RE-M__ller_______-7.pdf").
func TestReminderAttachmentKeepsNonASCIINumber(t *testing.T) {
	t.Parallel()
	raw, m := remindOverdueNumbered(t, "RE-Müller/東京-7")
	const want = "invoice-RE-Müller_東京-7.pdf"
	if _, ok := m.Attachments[want]; !ok || len(m.Attachments) != 1 {
		t.Errorf("attachments %q, want %q", keys(m.Attachments), want)
	}
	raw = strings.ReplaceAll(raw, "\r\n ", " ")
	const fallback = `filename="invoice-RE-M_ller___-7.pdf"`
	if !strings.Contains(raw, fallback) {
		t.Errorf("no ASCII fallback %s in the message:\n%.2000s", fallback, raw)
	}
}

// TestReminderAttachmentNameFitsAFileSystem: the reminder of an invoice
// whose number is 120 characters of a 3-byte script names its PDF in at
// most 200 bytes of UTF-8 (mailer.MaxFileNameBytes, as the download's
// name), still "invoice-" + the number's start + "….pdf": the name was
// bounded to 200 characters, 372 bytes here, which a mail client cannot
// save under that name.
func TestReminderAttachmentNameFitsAFileSystem(t *testing.T) {
	t.Parallel()
	_, m := remindOverdueNumbered(t, strings.Repeat("請求書", 40))
	if len(m.Attachments) != 1 {
		t.Fatalf("attachments %q, want one", keys(m.Attachments))
	}
	for name := range m.Attachments {
		if len(name) > mailer.MaxFileNameBytes || !utf8.ValidString(name) || !strings.HasPrefix(name, "invoice-請求書") || !strings.HasSuffix(name, "….pdf") {
			t.Errorf("attachment name of %d bytes (valid UTF-8 %v): %q; want at most %d bytes, invoice-<number cut>….pdf",
				len(name), utf8.ValidString(name), name, mailer.MaxFileNameBytes)
		}
	}
}

// remindOverdueNumbered renders and then reminds, over SMTP, an overdue
// invoice of acme numbered number, and returns the one message sent, raw
// and parsed.
func remindOverdueNumbered(t *testing.T, number string) (string, receivedMail) {
	t.Helper()
	srv := smtptest.Start(t, smtptest.Options{})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	acme := e.provision(t, "acme", "Acme Invoicing Ltd")
	id := e.addInvoice(t, acme, acmeCustomer, overdueInvoice(number))
	if err := e.work(tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id}); err != nil {
		t.Fatal(err)
	}
	e.setToday(t, "2026-03-01")
	if err := e.work(tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"}); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	return string(msgs[0].Data), parseMail(t, msgs[0].Data)
}
