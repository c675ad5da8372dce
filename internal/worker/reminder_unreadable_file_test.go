package worker_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/internal/mailer/smtptest"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/tasks"
)

// TestReminderWhoseStoredPDFCannotBeReadAttachesOneRenderedForTheEmail:
// the invoice_documents row of an overdue invoice matches the invoice as
// it is now, but its file cannot be read: removed (a volume not mounted,
// a file deleted by hand), a directory in its place, or a symbolic link
// the store refuses. The reminder is sent at once with the invoice
// rendered for the email, as when the stored PDF is out of date. Before,
// a missing file sent the reminder without the invoice, and a link made
// the reminder fail at every retry until it was archived, never sent.
func TestReminderWhoseStoredPDFCannotBeReadAttachesOneRenderedForTheEmail(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	acme := e.provision(t, "acme", "Acme Invoicing Ltd")
	e.setToday(t, "2026-03-01")
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, path string)
	}{
		{"removed", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}},
		{"a directory in its place", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(path, 0o750); err != nil {
				t.Fatal(err)
			}
		}},
		{"a symbolic link", func(t *testing.T, path string) {
			elsewhere := filepath.Join(t.TempDir(), "invoice.pdf")
			if err := os.Rename(path, elsewhere); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(elsewhere, path); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		overdue := acmeInvoice
		overdue.Status = "overdue"
		overdue.Number = "ACME-" + strings.ReplaceAll(tc.name, " ", "-")
		id := e.addInvoice(t, acme, acmeCustomer, overdue)
		if err := e.work(tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id}); err != nil {
			t.Fatal(err)
		}
		tc.spoil(t, filepath.Join(e.docs.Root(), acme.ID, filepath.FromSlash(invoice.DocumentKey(id))))
		before := len(srv.Messages())
		if err := e.work(tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"}); err != nil {
			t.Errorf("%s: reminder failed: %v", tc.name, err)
			continue
		}
		msgs := srv.Messages()
		if len(msgs) != before+1 {
			t.Errorf("%s: %d messages, want 1", tc.name, len(msgs)-before)
			continue
		}
		m := parseMail(t, msgs[len(msgs)-1].Data)
		att, ok := m.Attachments["invoice-"+overdue.Number+".pdf"]
		if !ok {
			t.Errorf("%s: no attachment; attachments %v", tc.name, keys(m.Attachments))
			continue
		}
		if text := pdfToText(t, att); !strings.Contains(text, "1,331.74") {
			t.Errorf("%s: the attached PDF does not show the amount the email asks for (%s):\n%s", tc.name, acmeTotal, text)
		}
	}
}
