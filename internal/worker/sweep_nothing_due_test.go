package worker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/tasks"
)

// TestSweepEnqueuesNoReminderOfNothingDue: an overdue invoice with
// nothing due (a credit note, a full discount; its reminder is skipped
// "nothing due" without using up the day) is not a reminder the sweep
// should enqueue. A credit note is never paid, so it stays overdue for
// good: enqueued anyway, every sweep (hourly by default) enqueues and runs
// a reminder task per such invoice, for ever, against the tenant's
// waiting cap and fair share. Invoices with something due (also after
// rounding to the currency's minor units) are enqueued as before.
func TestSweepEnqueuesNoReminderOfNothingDue(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	now := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	e.h.Now = func() time.Time { return now }
	acme := e.provision(t, "acme", "Acme")
	overdue := func(number, currency string, lines ...invoice.Line) invoice.New {
		inv := overdueInvoice(number)
		inv.Currency, inv.Lines = currency, lines
		return inv
	}
	noLinesZero := overdue("CN-4", "JPY")
	noLinesZero.Amount = decimal.NewNullDecimal(decimal.RequireFromString("0.40")) // prints JPY 0
	noLinesDue := overdue("INV-4", "EUR")
	noLinesDue.Amount = decimal.NewNullDecimal(decimal.RequireFromString("12.00"))
	nothingDue := []invoice.New{
		overdue("CN-1", "EUR", line("Credit note for ACME-1", "1", "-25.00"), line("Service", "1", "10.00")),
		overdue("CN-2", "EUR", line("Service", "1", "10.00"), line("Full discount", "1", "-10.00")),
		overdue("CN-3", "KWD", line("Refund", "-0.5", "0.25")),
		overdue("CN-5", "EUR", line("Rounds to zero", "0.4", "0.01")),
		noLinesZero,
	}
	somethingDue := []invoice.New{
		overdue("INV-1", "EUR", line("Service", "1", "10.00"), line("Discount", "1", "-9.99")),
		overdue("INV-2", "KWD", line("Service", "0.1", "0.01")), // KWD 0.001
		overdue("INV-3", "EUR", line("Rounds up", "0.5", "0.01")),
		noLinesDue,
	}
	want := map[int64]bool{}
	for _, inv := range nothingDue {
		e.addInvoice(t, acme, acmeCustomer, inv)
	}
	for _, inv := range somethingDue {
		want[e.addInvoice(t, acme, acmeCustomer, inv)] = true
	}
	if err := e.work(tasks.InvoicesOverdue{TenantID: acme.ID, Tick: 1}); err != nil {
		t.Fatal(err)
	}
	got := map[int64]bool{}
	for _, info := range pendingOfType(t, e.inspector, tasks.QueueLow, tasks.TypeInvoiceReminder) {
		got[decodePayload[tasks.InvoiceReminder](t, info).InvoiceID] = true
	}
	for id := range got {
		if !want[id] {
			t.Errorf("the sweep enqueued a reminder of invoice %d, which has nothing due", id)
		}
	}
	for id := range want {
		if !got[id] {
			t.Errorf("the sweep enqueued no reminder of invoice %d, which has something due", id)
		}
	}
}

// TestSweepEnqueuesNoReminderOfAnInvoiceItCannotLoad: an overdue invoice
// whose reminder can never load it (a NaN amount, quantity or unit price,
// which PostgreSQL's numeric takes, or an infinite issue or due date,
// which timestamptz takes; the reminder is archived at once with
// invoice.ErrInvalidData, and uses up nothing) is not a reminder the sweep
// should enqueue: every sweep (hourly by default) would enqueue it again,
// replacing the archived task, and archive it again, an error line and a
// failure each time, as many archived tasks an hour as the tenant has such
// invoices in the queue's archive that every tenant shares. A NaN sorts
// above every number in PostgreSQL, so it passes "something due". The
// others are enqueued as before.
func TestSweepEnqueuesNoReminderOfAnInvoiceItCannotLoad(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	now := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	e.h.Now = func() time.Time { return now }
	acme := e.provision(t, "acme", "Acme")
	broken := map[string]string{
		"NAN-AMOUNT":       `UPDATE invoices SET amount = 'NaN' WHERE id = $1`,
		"NAN-AMOUNT-LINES": `UPDATE invoices SET amount = 'NaN' WHERE id = $1`,
		"NAN-QUANTITY":     `UPDATE line_items SET quantity = 'NaN' WHERE invoice_id = $1`,
		"NAN-PRICE":        `UPDATE line_items SET unit_price = 'NaN' WHERE invoice_id = $1`,
		"INF-ISSUED":       `UPDATE invoices SET issued_at = 'infinity' WHERE id = $1`,
		// Sent, due at -infinity: the sweep marks it overdue.
		"INF-DUE": `UPDATE invoices SET due_date = '-infinity', status = 'sent' WHERE id = $1`,
	}
	want := map[int64]bool{}
	for number, update := range broken {
		inv := overdueInvoice(number)
		inv.Lines = []invoice.Line{line("Service", "1", "10.00")}
		if number == "NAN-AMOUNT" {
			inv.Lines, inv.Amount = nil, decimal.NewNullDecimal(decimal.RequireFromString("12.00"))
		}
		id := e.addInvoice(t, acme, acmeCustomer, inv)
		e.inTenant(t, acme, func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, update, id)
			return err
		})
		if err := e.work(tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: acme.Day(now)}); !errors.Is(err, invoice.ErrInvalidData) {
			t.Fatalf("reminder of %s: %v, want invoice.ErrInvalidData", number, err)
		}
	}
	good := overdueInvoice("INV-1")
	good.Lines = []invoice.Line{line("Service", "1", "10.00")}
	want[e.addInvoice(t, acme, acmeCustomer, good)] = true

	if err := e.work(tasks.InvoicesOverdue{TenantID: acme.ID, Tick: 1}); err != nil {
		t.Fatal(err)
	}
	got := map[int64]bool{}
	for _, info := range pendingOfType(t, e.inspector, tasks.QueueLow, tasks.TypeInvoiceReminder) {
		got[decodePayload[tasks.InvoiceReminder](t, info).InvoiceID] = true
	}
	for id := range got {
		if !want[id] {
			t.Errorf("the sweep enqueued a reminder of invoice %d, which its reminder cannot load", id)
		}
	}
	for id := range want {
		if !got[id] {
			t.Errorf("the sweep enqueued no reminder of invoice %d, which has something due", id)
		}
	}
}
