package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/mailer/smtptest"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// addDueOn inserts a sent invoice of tn due on day (YYYY-MM-DD), stored as
// the app stores a due date: that date's midnight UTC, whatever the
// session's TimeZone (the test server's default is the host's zone, which
// initdb takes: a bare $2::date was the date's midnight there, in Berlin
// 23:00 UTC the day before, and the invoice was due, and overdue, a day
// early).
func (e *handlerEnv) addDueOn(t *testing.T, tn tenantctx.Tenant, number, day string) int64 {
	t.Helper()
	inv := acmeInvoice
	inv.Number, inv.Status = number, "sent"
	id := e.addInvoice(t, tn, acmeCustomer, inv)
	e.inTenant(t, tn, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE invoices SET due_date = $2::date::timestamp AT TIME ZONE 'UTC' WHERE id = $1`, id, day)
		return err
	})
	return id
}

// TestInvoiceDueTodayIsNotOverdue: an invoice is overdue once its due date
// is before the tenant's current date. One due today is not: neither the
// sweep (invoices:overdue) nor a reminder asked for today marks it, and
// no email says it "was due on" today "and is overdue"; one due yesterday
// is marked by both. (Comparing the date with now() turned it into
// midnight at the start of the due day: overdue all through it.)
func TestInvoiceDueTodayIsNotOverdue(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	acme := e.provision(t, "acme", "Acme")
	today := acme.Day(time.Now())
	e.setToday(t, today) // noon UTC: the default tenant's zone is UTC
	dueToday := e.addDueOn(t, acme, "DUE-TODAY", today)
	remindedToday := e.addDueOn(t, acme, "DUE-TODAY-2", today)
	dueYesterday := e.addDueOn(t, acme, "DUE-YESTERDAY", dayAfter(t, today, -1))
	remindedYesterday := e.addDueOn(t, acme, "DUE-YESTERDAY-2", dayAfter(t, today, -1))

	for _, id := range []int64{remindedToday, remindedYesterday} {
		if err := e.work(tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: id, Day: today}); err != nil {
			t.Fatalf("reminder of invoice %d: %v", id, err)
		}
	}
	if got := e.invoiceStatus(t, acme, remindedToday); got != "sent" {
		t.Errorf("invoice due today after a reminder asked for today: %s, want sent (not overdue until tomorrow)", got)
	}
	if got := e.invoiceStatus(t, acme, remindedYesterday); got != "overdue" {
		t.Errorf("invoice due yesterday after a reminder asked for today: %s, want overdue", got)
	}
	if n := len(srv.Messages()); n != 1 {
		t.Errorf("%d reminder emails, want 1 (for the invoice due yesterday only)", n)
	}

	if err := e.work(tasks.InvoicesOverdue{TenantID: acme.ID, Tick: 1}); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[int64]string{dueToday: "sent", remindedToday: "sent", dueYesterday: "overdue", remindedYesterday: "overdue"} {
		if got := e.invoiceStatus(t, acme, id); got != want {
			t.Errorf("after the sweep: invoice %d is %s, want %s", id, got, want)
		}
	}
}

// TestOverdueIsJudgedInTheTenantsTimeZone: the same instant is another
// date for tenants in other zones, and each judges its invoices' due dates
// against its own. At 2026-03-01 12:00 UTC it is already 2 March in
// Auckland and still 1 March in Los Angeles: an invoice due 1 March is
// overdue for the first (sweep and reminder alike), due today for the
// second and for a tenant in UTC. Once it is 2 March in Los Angeles too
// (09:00 UTC the next day), it is overdue there.
func TestOverdueIsJudgedInTheTenantsTimeZone(t *testing.T) {
	t.Parallel()
	srv := smtptest.Start(t, smtptest.Options{})
	e := newHandlerEnv(t, smtpMailer(t, srv))
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	e.clock.Store(&now)
	type tenant struct {
		zone                 string
		sweep, remind        int64
		overdue, overdueNext bool // at now, and at 09:00 UTC the next day
	}
	tenants := map[string]*tenant{
		"auckland":   {zone: "Pacific/Auckland", overdue: true, overdueNext: true},
		"losangeles": {zone: "America/Los_Angeles", overdue: false, overdueNext: true},
		"zoneless":   {zone: "", overdue: false, overdueNext: true}, // the default: UTC
	}
	tns := map[string]tenantctx.Tenant{}
	for slug, tc := range tenants {
		tn := e.provision(t, slug, slug)
		if tc.zone != "" {
			var err error
			if tn, err = e.h.Tenancy.SetTimeZone(e.ctx, tn.ID, tc.zone, "test"); err != nil {
				t.Fatalf("SetTimeZone(%s): %v", tc.zone, err)
			}
		}
		if want := map[bool]string{true: tc.zone, false: "UTC"}[tc.zone != ""]; tn.TimeZone != want {
			t.Fatalf("tenant %s: time zone %q, want %q", slug, tn.TimeZone, want)
		}
		tns[slug] = tn
		tc.sweep = e.addDueOn(t, tn, "SWEPT", "2026-03-01")
		tc.remind = e.addDueOn(t, tn, "REMINDED", "2026-03-01")
	}
	status := map[bool]string{true: "overdue", false: "sent"}
	for slug, tc := range tenants {
		tn := tns[slug]
		if err := e.work(tasks.InvoiceReminder{TenantID: tn.ID, InvoiceID: tc.remind, Day: "2026-03-01"}); err != nil {
			t.Fatalf("tenant %s (%s): reminder: %v", slug, tn.TimeZone, err)
		}
		if err := e.work(tasks.InvoicesOverdue{TenantID: tn.ID, Tick: 1}); err != nil {
			t.Fatalf("tenant %s (%s): invoices:overdue: %v", slug, tn.TimeZone, err)
		}
		for _, id := range []int64{tc.sweep, tc.remind} {
			if got := e.invoiceStatus(t, tn, id); got != status[tc.overdue] {
				t.Errorf("at %s, tenant in %s: invoice due 2026-03-01 is %s, want %s", now.Format(time.RFC3339), tn.TimeZone, got, status[tc.overdue])
			}
		}
	}
	if n := len(srv.Messages()); n != 1 {
		t.Errorf("%d reminder emails, want 1 (the Auckland tenant's)", n)
	}

	next := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	e.clock.Store(&next)
	for slug, tc := range tenants {
		tn := tns[slug]
		if err := e.work(tasks.InvoicesOverdue{TenantID: tn.ID, Tick: 2}); err != nil {
			t.Fatalf("tenant %s: invoices:overdue: %v", slug, err)
		}
		if got := e.invoiceStatus(t, tn, tc.sweep); got != status[tc.overdueNext] {
			t.Errorf("at %s, tenant in %s: invoice due 2026-03-01 is %s, want %s", next.Format(time.RFC3339), tn.TimeZone, got, status[tc.overdueNext])
		}
	}
}
