package worker_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/mailer/smtptest"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/pdf"
	"github.com/invoicing/tenantworker/tasks"
)

// TestInvoiceWithHugeLinesIsArchived: an invoice over PDF_MAX_LINES is
// archived at once (README, "Tasks"), whatever its lines hold. The load
// aggregated every line of the invoice into arrays before the limit was
// checked: lines whose descriptions add up to more than PostgreSQL's 1 GB
// array limit (here 4 lines of 300 MB of one letter, which the table
// stores compressed) failed the load with "array size exceeds the maximum
// allowed", an ordinary error: the task was retried 10 times, each
// attempt making the database build a gigabyte, instead of being archived
// with the reason. Under the line limit such lines can never be loaded
// either: the task is archived at once as invalid data, and so is the
// reminder of such an invoice. Over the limit the reminder loads no lines
// (the email gets no PDF of it: the render refuses it), takes the total
// from the database and is sent; it loaded every line to total them, and
// was archived as invalid data, the customer never reminded.
func TestInvoiceWithHugeLinesIsArchived(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	acme := e.provision(t, "acme", "Acme")
	id := e.addInvoice(t, acme, acmeCustomer, acmeInvoice) // 4 lines
	e.inTenant(t, acme, func(ctx context.Context, tx pgx.Tx) error {
		// One value, made once (an InitPlan) for the four rows and
		// compressed with lz4, faster than pglz on a run of one letter.
		if _, err := tx.Exec(ctx, "SET LOCAL default_toast_compression = lz4"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "UPDATE line_items SET description = (SELECT repeat('a', 300000000)) WHERE invoice_id = $1", id)
		return err
	})
	e.h.PDFMaxLines = 3
	err := e.work(tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id})
	if !errors.Is(err, asynq.SkipRetry) || !errors.Is(err, pdf.ErrTooLarge) {
		t.Fatalf("InvoicePDF of 4 huge lines over a limit of 3 = %.300v; want archived at once as too large", err)
	}
	e.setToday(t, "2026-03-01")
	if err := e.work(tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"}); err != nil {
		t.Fatalf("reminder of an invoice of 4 huge lines over a limit of 3 = %.300v; want it sent without the PDF", err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages sent, want the reminder", len(msgs))
	}
	m := parseMail(t, msgs[0].Data)
	if !strings.Contains(m.Text, "Amount due: "+acmeTotal) || len(m.Attachments) != 0 {
		t.Fatalf("reminder text %q with %d attachments; want the amount due %s and no PDF", m.Text, len(m.Attachments), acmeTotal)
	}
	e.h.PDFMaxLines = 0 // the default, 5,000
	// Over 1 GB the lines are over the limit on their bytes as well
	// (PDF_MAX_LINE_BYTES, TestInvoiceWithBulkyLinesIsRefusedUnread):
	// lifted past them, the load is what refuses them.
	e.h.PDFMaxLineBytes = 4 << 30
	err = e.work(tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id})
	if !errors.Is(err, asynq.SkipRetry) || !errors.Is(err, invoice.ErrInvalidData) {
		t.Fatalf("InvoicePDF of 4 huge lines under the line limit = %.300v; want archived at once as invalid data", err)
	}
	e.setToday(t, "2026-03-02")
	err = e.work(tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-02"})
	if !errors.Is(err, asynq.SkipRetry) || !errors.Is(err, invoice.ErrInvalidData) {
		t.Fatalf("reminder of an invoice of 4 huge lines = %.300v; want archived at once as invalid data", err)
	}
}

// TestInvoiceWithBulkyLinesIsRefusedUnread: an invoice whose line
// descriptions add up to more bytes than PDF_MAX_LINE_BYTES is refused
// like one over PDF_MAX_LINES (README, "Tasks"), its lines never read by
// the worker: the database sums their sizes and leaves them out of the
// load. Only their number was limited: 1,000 lines of 100 KB (100 MB),
// well under PDF_MAX_LINES, were loaded whole, pgx's row buffer and the
// strings taking hundreds of MB of a worker's heap (3,000 such lines, 1.2
// GB) before the page limit refused the document. The bound on the
// memory allocated by the task is generous: it counts allocations, not
// time, and the test runs alone (not in parallel).
func TestInvoiceWithBulkyLinesIsRefusedUnread(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	acme := e.provision(t, "acme", "Acme")
	id := e.addInvoice(t, acme, acmeCustomer, acmeInvoice)
	e.inTenant(t, acme, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO line_items (invoice_id, position, description, quantity, unit_price)
			SELECT $1, g, g::text || repeat(md5(g::text), 3200), 1, 10 FROM generate_series(1, 1000) g`, id)
		return err
	})
	const lineBytesBound = 32 << 20 // the lines are 100 MB
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	err := e.work(tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id})
	runtime.ReadMemStats(&after)
	if !errors.Is(err, asynq.SkipRetry) || !errors.Is(err, pdf.ErrTooLarge) || !strings.Contains(err.Error(), "line descriptions of") {
		t.Fatalf("InvoicePDF of 100 MB of line descriptions = %.300v; want archived at once as too large for its line bytes", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > lineBytesBound {
		t.Errorf("InvoicePDF refusing 100 MB of line descriptions allocated %d bytes, want at most %d: the lines were read", n, lineBytesBound)
	}
	e.setToday(t, "2026-03-01")
	if err := e.work(tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"}); err != nil {
		t.Fatalf("reminder of an invoice of 100 MB of line descriptions = %.300v; want it sent without the PDF", err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages sent, want the reminder", len(msgs))
	}
	if m := parseMail(t, msgs[0].Data); !strings.Contains(m.Text, "Amount due: ") || len(m.Attachments) != 0 {
		t.Fatalf("reminder text %q with %d attachments; want an amount due and no PDF", m.Text, len(m.Attachments))
	}
}
