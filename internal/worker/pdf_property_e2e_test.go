package worker_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/mailer/smtptest"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/invoice/invoicetest"
	"github.com/invoicing/tenantworker/tasks"
)

// TestPDFTaskAndReminderSayWhatTheDatabaseHolds runs generated invoices
// (every currency class and font path) end to end: invoice:pdf renders
// and stores each, its text read back carries the exact amounts; then,
// overdue, invoice:reminder mails the same total.
func TestPDFTaskAndReminderSayWhatTheDatabaseHolds(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	acme := e.provision(t, "acme", "Acme Invoicing Ltd")
	e.setToday(t, "2026-03-01")
	rng := rand.New(rand.NewPCG(20260302, 1))
	want := map[string]bool{}
	for k := 0; k < 40 && len(want) < 12; k++ {
		p := invoicetest.Generate(rng, k)
		class := fmt.Sprintf("%d-%s", p.MinorUnits(), p.Path)
		if want[class] && k >= 12 {
			continue // keep it short: a few of each currency class and font path
		}
		want[class] = true
		p.New.Status = "overdue"
		c := p.New.Customer
		id := e.addInvoice(t, acme, c, p.New)
		// The stored amount is the lines' total as the numeric(12,2)
		// column holds it: it does not differ from the lines.
		if res := e.workResult(t, tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id}); res.AmountDiffers != p.Given {
			t.Errorf("invoice %d %s (%s, lines' total %s, stored amount computed by Create: %v): amount_differs = %v, want %v",
				k, p.New.Number, p.Currency, invoicetest.FormatScaled(p.Total(), p.MinorUnits()), !p.Given, res.AmountDiffers, p.Given)
		}
		var inv invoice.Invoice
		e.inTenant(t, acme, func(ctx context.Context, tx pgx.Tx) error {
			var err error
			inv, err = invoice.Load(ctx, tx, id)
			return err
		})
		doc := e.readDocument(t, acme, invoice.DocumentKey(id))
		if errs := invoicetest.Check(p, inv, invoicetest.LayoutText(t, doc)); len(errs) > 0 {
			t.Errorf("invoice %d %s (%s, %d lines): stored PDF:\n  %s", k, p.New.Number, p.Currency, len(p.Lines), strings.Join(errs, "\n  "))
		}

		before := len(srv.Messages())
		if err := e.work(tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: "2026-03-01"}); err != nil {
			t.Fatalf("invoice %d: InvoiceReminder: %v", k, err)
		}
		msgs := srv.Messages()
		if p.Total().Sign() <= 0 {
			// Nothing due (a credit note): no payment reminder.
			if len(msgs) != before {
				t.Errorf("invoice %d %s: a reminder for a total of %s", k, p.New.Number, invoicetest.FormatScaled(p.Total(), p.MinorUnits()))
			}
			continue
		}
		if len(msgs) != before+1 {
			t.Fatalf("invoice %d: %d messages after the reminder, want %d", k, len(msgs), before+1)
		}
		m := parseMail(t, msgs[len(msgs)-1].Data)
		total := p.Currency + " " + invoicetest.FormatScaled(p.Total(), p.MinorUnits())
		if !strings.Contains(m.Text, "Amount due: "+total+"\n") {
			t.Errorf("invoice %d %s: reminder text lacks %q:\n%s", k, p.New.Number, "Amount due: "+total, m.Text)
		}
		if !strings.Contains(m.Text, "Dear "+c.Name+",") {
			t.Errorf("invoice %d %s: reminder text lacks the customer name %q:\n%s", k, p.New.Number, c.Name, m.Text)
		}
		for name, data := range m.Attachments {
			if errs := invoicetest.Check(p, inv, invoicetest.LayoutText(t, data)); len(errs) > 0 {
				t.Errorf("invoice %d %s: attachment %s:\n  %s", k, p.New.Number, name, strings.Join(errs, "\n  "))
			}
		}
		if len(m.Attachments) != 1 {
			t.Errorf("invoice %d %s: %d attachments, want the PDF", k, p.New.Number, len(m.Attachments))
		}
	}
}

// TestInvoicePDFThreeDecimalAmountDoesNotDiffer: a KWD invoice of 0.125
// is stored with the amount 0.13 (numeric(12,2), the conversion's rule);
// that is its lines' sum as the column holds it, not an amount that
// differs from its lines.
func TestInvoicePDFThreeDecimalAmountDoesNotDiffer(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	acme := e.provision(t, "acme", "Acme Invoicing Ltd")
	id := e.addInvoice(t, acme, invoice.Customer{Name: "Zoë", Email: "z@example.org"}, invoice.New{
		Number: "KWD-1", Currency: "KWD", Lines: []invoice.Line{line("Dinar", "0.5", "0.25")},
	})
	if res := e.workResult(t, tasks.InvoicePDF{TenantID: acme.ID, InvoiceID: id}); res.AmountDiffers {
		t.Errorf("KWD 0.125 stored as 0.13: amount_differs = true, want false")
	}
	if text := pdfToText(t, e.readDocument(t, acme, invoice.DocumentKey(id))); !strings.Contains(text, "KWD 0.125") {
		t.Errorf("PDF lacks the total KWD 0.125:\n%s", text)
	}
}
