package worker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/mailer/smtptest"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
)

// TestOverdueIsNotJudgedInTheDatabasesTimeZone: a database whose default
// TimeZone is not UTC (initdb takes the host's zone; ALTER DATABASE or
// ALTER ROLE ... SET timezone) changes nothing of which invoices are
// overdue. An invoice due 1 March (stored as invoice.Create and the app's
// rows store a date, 00:00 UTC, and printed "2026-03-01" by its document
// and its reminder) is not overdue at noon on 1 March for a tenant in UTC,
// neither for a reminder asked for that day nor for the sweep; it is the
// next day. (The worker's connections took the database's TimeZone, and
// due_date < '2026-03-01'::date compared it with 05:00 UTC in New York's
// winter: overdue, and reminded "was due on 2026-03-01 and is overdue", on
// its due date.)
func TestOverdueIsNotJudgedInTheDatabasesTimeZone(t *testing.T) {
	t.Parallel()
	dbURL := testenv.Postgres(t)
	setDatabaseTimeZone(t, dbURL, "America/New_York")
	srv := smtptest.Start(t, smtptest.Options{})
	e := newHandlerEnvOn(t, smtpMailer(t, srv), dbURL)
	acme := e.provision(t, "acme", "Acme") // UTC
	e.setToday(t, "2026-03-01")
	inv := acmeInvoice
	inv.Status = "sent"
	inv.DueAt = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	inv.Number = "DUE-TODAY"
	reminded := e.addInvoice(t, acme, acmeCustomer, inv)
	inv.Number = "DUE-TODAY-SWEPT"
	swept := e.addInvoice(t, acme, acmeCustomer, inv)

	if err := e.work(tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: reminded, Day: "2026-03-01"}); err != nil {
		t.Fatalf("reminder: %v", err)
	}
	if err := e.work(tasks.InvoicesOverdue{TenantID: acme.ID, Tick: 1}); err != nil {
		t.Fatalf("invoices:overdue: %v", err)
	}
	for _, id := range []int64{reminded, swept} {
		if got := e.invoiceStatus(t, acme, id); got != "sent" {
			t.Errorf("at noon on 2026-03-01 (UTC), database TimeZone America/New_York: invoice %d due 2026-03-01 is %s, want sent", id, got)
		}
	}
	for _, m := range srv.Messages() {
		text := string(m.Data)
		if i := strings.Index(text, "was due on"); i >= 0 {
			text = text[i:min(len(text), i+60)]
		}
		t.Errorf("reminder email sent on the due date: %q", text)
	}

	e.setToday(t, "2026-03-02")
	if err := e.work(tasks.InvoicesOverdue{TenantID: acme.ID, Tick: 2}); err != nil {
		t.Fatalf("invoices:overdue: %v", err)
	}
	for _, id := range []int64{reminded, swept} {
		if got := e.invoiceStatus(t, acme, id); got != "overdue" {
			t.Errorf("at noon on 2026-03-02 (UTC): invoice %d due 2026-03-01 is %s, want overdue", id, got)
		}
	}
}
