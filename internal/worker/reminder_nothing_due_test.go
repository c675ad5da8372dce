package worker_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/invoicing/tenantworker/internal/mailer/smtptest"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/tasks"
)

// TestReminderOfNothingDueSendsNoEmail: an overdue invoice whose document
// shows nothing due (a credit note, a negative or zero total, also one
// without lines whose stored amount is negative, or that rounds to zero in
// its currency) gets no payment reminder: "Amount due: EUR -15.00" asks a
// customer who is owed money to pay. The run sends nothing, says why in
// its result and does not use up the day; an invoice with something due
// is reminded as before.
func TestReminderOfNothingDueSendsNoEmail(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	acme := e.provision(t, "acme", "Acme Invoicing Ltd")
	day := "2026-03-01"
	e.setToday(t, day)
	cust := invoice.Customer{Name: "Zoë Müller", Email: "zoe@mueller.example"}
	overdue := func(number, currency string, lines ...invoice.Line) invoice.New {
		inv := overdueInvoice(number)
		inv.Currency, inv.Lines = currency, lines
		return inv
	}
	noLines := overdue("CN-4", "JPY")
	noLines.Amount = decimal.NewNullDecimal(decimal.RequireFromString("0.40")) // prints JPY 0
	cases := []struct {
		inv    invoice.New
		reason string
	}{
		{overdue("CN-1", "EUR", line("Credit note for ACME-1", "1", "-25.00"), line("Service", "1", "10.00")), "nothing due (total EUR -15.00)"},
		{overdue("CN-2", "EUR", line("Service", "1", "10.00"), line("Full discount", "1", "-10.00")), "nothing due (total EUR 0.00)"},
		{overdue("CN-3", "KWD", line("Refund", "-0.5", "0.25")), "nothing due (total KWD -0.125)"},
		{noLines, "nothing due (total JPY 0)"},
	}
	for _, c := range cases {
		id := e.addInvoice(t, acme, cust, c.inv)
		var buf bytes.Buffer
		if err := e.w.Work(worker.RecordResults(e.ctx, &buf), tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: day}); err != nil {
			t.Fatalf("%s: InvoiceReminder: %v", c.inv.Number, err)
		}
		var res struct {
			Sent   bool   `json:"sent"`
			Reason string `json:"reason"`
		}
		if err := json.Unmarshal(buf.Bytes(), &res); err != nil {
			t.Fatalf("%s: result %q: %v", c.inv.Number, buf.String(), err)
		}
		if res.Sent || res.Reason != c.reason {
			t.Errorf("%s: result %s, want sent false, reason %q", c.inv.Number, buf.String(), c.reason)
		}
		if rows := e.reminderRows(t, acme, id); len(rows) != 0 {
			t.Errorf("%s: reminder rows %+v, want none (the day is not used up)", c.inv.Number, rows)
		}
	}
	for _, m := range srv.Messages() {
		t.Errorf("payment reminder sent for an invoice with nothing due:\n%s", parseMail(t, m.Data).Text)
	}

	// Something due: reminded.
	id := e.addInvoice(t, acme, cust, overdue("INV-5", "EUR", line("Service", "1", "10.00"), line("Discount", "1", "-9.99")))
	if err := e.work(tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: day}); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Messages()); n != 1 {
		t.Errorf("%d messages after the reminder of an invoice with EUR 0.01 due, want 1", n)
	}
}
