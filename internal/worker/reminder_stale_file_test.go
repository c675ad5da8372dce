package worker_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/mailer/smtptest"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/internal/worker/workertest"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
)

// cancelAfterPut is a document store whose Put ends the task's context
// once the document is written: the render's transaction then fails after
// its file replaced the recorded one (as a kill, a deadline or a database
// error between the write and the commit leaves it).
type cancelAfterPut struct {
	*storage.FS
	cancel context.CancelFunc
}

func (s cancelAfterPut) Put(ctx context.Context, tenantID, key string, r io.Reader) (storage.DocumentInfo, error) {
	info, err := s.FS.Put(ctx, tenantID, key, r)
	s.cancel()
	return info, err
}

// TestReminderDoesNotAttachAnotherVersionOfTheFile: a render whose
// transaction failed after its file was written leaves another version of
// the invoice under the key beside the earlier render's row; an edit
// undone since makes the row's inputs match the invoice again. The
// reminder must attach the invoice as the email describes it, not the
// file left under the key (InvoicePDF checks the file's SHA-256 against
// the row for the same reason: Handlers.stored).
func TestReminderDoesNotAttachAnotherVersionOfTheFile(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	acme := e.provision(t, "acme", "Acme Invoicing Ltd")
	overdue := acmeInvoice
	overdue.Status = "overdue"
	id := e.addInvoice(t, acme, acmeCustomer, overdue)
	if err := e.work(tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id}); err != nil {
		t.Fatal(err)
	}
	setTravel := func(price, amount string) {
		e.inTenant(t, acme, func(ctx context.Context, tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `UPDATE line_items SET unit_price = $2::numeric WHERE invoice_id = $1 AND description = 'Travel expenses'`, id, price); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `UPDATE invoices SET amount = $2::numeric WHERE id = $1`, id, amount)
			return err
		})
	}
	// An edit, whose render writes its file and then fails before its commit.
	setTravel("71.75", "1231.74")
	h := *e.h
	ctx, cancel := context.WithCancel(e.ctx)
	h.Documents = cancelAfterPut{FS: e.docs, cancel: cancel}
	w := workertest.New(&h, worker.MuxOptions{Logger: discardLogger()})
	if err := w.Work(ctx, tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id}); err == nil {
		t.Fatal("the render whose context ended after the write succeeded")
	}
	if text := pdfToText(t, e.readDocument(t, acme, invoice.DocumentKey(id))); !strings.Contains(text, "1,231.74") {
		t.Fatalf("the failed render did not leave its file:\n%s", text)
	}
	// The edit undone: the row's inputs match the invoice again.
	setTravel("171.75", "1331.74")

	e.setToday(t, "2026-03-01")
	if err := e.work(tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"}); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	m := parseMail(t, msgs[0].Data)
	if !strings.Contains(m.Text, "Amount due: "+acmeTotal) {
		t.Fatalf("mail text lacks the total %s:\n%s", acmeTotal, m.Text)
	}
	att, ok := m.Attachments["invoice-ACME-2026-0001.pdf"]
	if !ok {
		t.Fatalf("no attachment; attachments %v", keys(m.Attachments))
	}
	if text := pdfToText(t, att); !strings.Contains(text, "1,331.74") || strings.Contains(text, "1,231.74") {
		t.Errorf("the attached PDF does not show the amount the email asks for (%s):\n%s", acmeTotal, text)
	}
}
