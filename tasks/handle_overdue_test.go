package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/tenantctx"
)

// pendingOfType returns the pending tasks of type typ in queue.
func pendingOfType(t *testing.T, insp *asynq.Inspector, queue, typ string) []*asynq.TaskInfo {
	t.Helper()
	var out []*asynq.TaskInfo
	for page := 1; ; page++ {
		infos, err := insp.ListPendingTasks(queue, asynq.Page(page), asynq.PageSize(500))
		if err != nil {
			if errors.Is(err, asynq.ErrQueueNotFound) {
				return nil
			}
			t.Fatalf("list pending tasks of %s: %v", queue, err)
		}
		for _, info := range infos {
			if info.Type == typ {
				out = append(out, info)
			}
		}
		if len(infos) < 500 {
			return out
		}
	}
}

// decodePayload decodes a task's payload into P.
func decodePayload[P any](t *testing.T, info *asynq.TaskInfo) P {
	t.Helper()
	var p P
	if err := json.Unmarshal(info.Payload, &p); err != nil {
		t.Fatalf("task %s payload %s: %v", info.ID, info.Payload, err)
	}
	return p
}

// pastDue and futureDue are due dates relative to the database's now().
var (
	pastDue   = time.Now().Add(-72 * time.Hour)
	futureDue = time.Now().Add(72 * time.Hour)
)

func TestInvoicesOverdueMarksAndEnqueuesReminders(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	now := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	e.h.Now = func() time.Time { return now }
	acme := e.provision(t, "acme", "Acme")
	add := func(number, status string, due time.Time) int64 {
		inv := acmeInvoice
		inv.Number, inv.Status, inv.DueAt = number, status, due
		return e.addInvoice(t, acme, acmeCustomer, inv)
	}
	sentLate := add("late", "sent", pastDue)
	sentOnTime := add("on-time", "sent", futureDue)
	paidLate := add("paid", "paid", pastDue)
	draftLate := add("draft", "draft", pastDue)
	remindedToday := add("reminded", "overdue", pastDue)
	remindedYesterday := add("reminded-yesterday", "overdue", pastDue)
	e.inTenant(t, acme, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO invoice_reminders (invoice_id, sent_on, recipient, status, sent_at)
			VALUES ($1, '2026-03-01', 'x@example.org', 'sent', now()), ($2, '2026-02-28', 'x@example.org', 'sent', now())`,
			remindedToday, remindedYesterday)
		return err
	})

	for run := range 2 { // a rerun enqueues nothing new
		if err := e.h.InvoicesOverdue(e.tenantCtx(acme), InvoicesOverdue{TenantID: acme.ID, Tick: 1}); err != nil {
			t.Fatalf("run %d: %v", run+1, err)
		}
		for id, want := range map[int64]string{sentLate: "overdue", sentOnTime: "sent", paidLate: "paid", draftLate: "draft"} {
			if got := e.invoiceStatus(t, acme, id); got != want {
				t.Errorf("run %d: invoice %d is %s, want %s", run+1, id, got, want)
			}
		}
		tasks := pendingOfType(t, e.inspector, QueueLow, TypeInvoiceReminder)
		got := map[int64]bool{}
		for _, info := range tasks {
			p := decodePayload[InvoiceReminder](t, info)
			if p.TenantID != acme.ID || p.Day != "2026-03-01" {
				t.Errorf("reminder payload %+v, want tenant %s day 2026-03-01", p, acme.ID)
			}
			if want := taskID(TypeInvoiceReminder, acme.ID, p.InvoiceID, p.Day); info.ID != want {
				t.Errorf("reminder task id %q, want %q", info.ID, want)
			}
			got[p.InvoiceID] = true
		}
		want := map[int64]bool{sentLate: true, remindedYesterday: true}
		if fmt.Sprint(got) != fmt.Sprint(want) || len(tasks) != len(want) {
			t.Errorf("run %d: %d reminder tasks for invoices %v, want one each for %v", run+1, len(tasks), got, want)
		}
	}
}

func TestInvoicesOverduePagesThroughManyInvoices(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	acme := e.provision(t, "acme", "Acme")
	first := e.addInvoice(t, acme, acmeCustomer, testInvoice{Number: "N-0", Status: "sent", Currency: "EUR",
		IssuedAt: pastDue, DueAt: pastDue})
	const n = 137
	e.inTenant(t, acme, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO invoices (number, customer_id, status, currency, due_date)
			SELECT 'N-' || g, customer_id, 'sent', 'EUR', due_date FROM invoices, generate_series(1, $2) g WHERE id = $1`,
			first, n-1)
		return err
	})
	if err := e.h.invoicesOverdue(e.tenantCtx(acme), InvoicesOverdue{TenantID: acme.ID, Tick: 1}, 10); err != nil {
		t.Fatal(err)
	}
	tasks := pendingOfType(t, e.inspector, QueueLow, TypeInvoiceReminder)
	seen := map[int64]bool{}
	for _, info := range tasks {
		seen[decodePayload[InvoiceReminder](t, info).InvoiceID] = true
	}
	if len(tasks) != n || len(seen) != n {
		t.Fatalf("%d reminder tasks for %d distinct invoices, want %d", len(tasks), len(seen), n)
	}
}

func TestSweepOverdueFansOutToActiveTenantsOnly(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	const tick = 1767225600
	type tenantInvoice struct {
		tenant    tenantctx.Tenant
		invoiceID int64
	}
	active := map[string]tenantInvoice{} // by tenant id
	for i := range 49 {
		tn := e.provision(t, fmt.Sprintf("tenant-%02d", i), fmt.Sprintf("Tenant %02d", i))
		inv := acmeInvoice
		inv.ID, inv.Number, inv.DueAt = int64(100+i), fmt.Sprintf("T%02d-1", i), pastDue
		active[tn.ID] = tenantInvoice{tn, e.addInvoice(t, tn, acmeCustomer, inv)}
	}
	prov := e.provisionAs(t, "still-provisioning", "Not Yet")
	inv := acmeInvoice
	inv.ID, inv.DueAt = 999, pastDue
	provInvoice := e.addInvoice(t, prov, acmeCustomer, inv)
	suspended := e.provision(t, "suspended", "Suspended")
	if _, err := e.catalog.SetStatus(e.ctx, suspended.ID, tenantctx.StatusSuspended); err != nil {
		t.Fatal(err)
	}

	// A page size that does not divide the number of tenants.
	if err := e.h.sweepOverdue(e.ctx, SweepOverdue{Tick: tick}, 7); err != nil {
		t.Fatalf("SweepOverdue: %v", err)
	}
	overdueTasks := pendingOfType(t, e.inspector, QueueLow, TypeInvoicesOverdue)
	if len(overdueTasks) != len(active) {
		t.Errorf("sweep enqueued %d invoices:overdue tasks, want %d", len(overdueTasks), len(active))
	}
	seen := map[string]bool{}
	for _, info := range overdueTasks {
		p := decodePayload[InvoicesOverdue](t, info)
		if _, ok := active[p.TenantID]; !ok {
			t.Errorf("invoices:overdue for tenant %q, which is not an active tenant", p.TenantID)
		}
		if want := taskID(TypeInvoicesOverdue, p.TenantID, tick); info.ID != want || p.Tick != tick {
			t.Errorf("task %s carries %+v: id and payload disagree (P4)", info.ID, p)
		}
		if seen[p.TenantID] {
			t.Errorf("tenant %s got two invoices:overdue tasks", p.TenantID)
		}
		seen[p.TenantID] = true
	}

	// Run each enqueued task through the real tenant middleware and adapter.
	run := Tenant(e.catalog)(Handle(e.h.InvoicesOverdue))
	for _, info := range overdueTasks {
		if err := run.ProcessTask(e.ctx, asynq.NewTask(info.Type, info.Payload)); err != nil {
			t.Fatalf("invoices:overdue %s: %v", info.ID, err)
		}
	}
	for _, ti := range active {
		if got := e.invoiceStatus(t, ti.tenant, ti.invoiceID); got != "overdue" {
			t.Errorf("tenant %s invoice %d is %s, want overdue", ti.tenant.Slug, ti.invoiceID, got)
		}
	}
	if got := e.invoiceStatus(t, prov, provInvoice); got != "sent" {
		t.Errorf("provisioning tenant's invoice is %s, want sent (untouched, P6)", got)
	}
	reminders := pendingOfType(t, e.inspector, QueueLow, TypeInvoiceReminder)
	if len(reminders) != len(active) {
		t.Errorf("%d reminder tasks, want %d", len(reminders), len(active))
	}
	for _, info := range reminders {
		p := decodePayload[InvoiceReminder](t, info)
		ti, ok := active[p.TenantID]
		if !ok || p.InvoiceID != ti.invoiceID {
			t.Errorf("reminder %s carries tenant %s invoice %d: not that tenant's invoice (P4)", info.ID, p.TenantID, p.InvoiceID)
		}
		if want := taskID(TypeInvoiceReminder, p.TenantID, p.InvoiceID, p.Day); info.ID != want {
			t.Errorf("reminder task id %s, payload says %s", info.ID, want)
		}
	}

	// The same tick again (a second replica, a retry) adds no task.
	if err := e.h.SweepOverdue(e.ctx, SweepOverdue{Tick: tick}); err != nil {
		t.Fatal(err)
	}
	if n := len(pendingOfType(t, e.inspector, QueueLow, TypeInvoicesOverdue)); n != len(active) {
		t.Errorf("after a rerun of tick %d: %d invoices:overdue tasks, want still %d", tick, n, len(active))
	}
}

func TestSweepOverdueHonoursCancelledContext(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	e.provision(t, "acme", "Acme")
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	if err := e.h.SweepOverdue(ctx, SweepOverdue{Tick: 1}); err == nil {
		t.Fatal("SweepOverdue with a cancelled ctx succeeded")
	}
	if n := len(pendingOfType(t, e.inspector, QueueLow, TypeInvoicesOverdue)); n != 0 {
		t.Fatalf("cancelled sweep enqueued %d tasks", n)
	}
}
