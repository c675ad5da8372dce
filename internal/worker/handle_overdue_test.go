package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/internal/worker/workertest"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/tasks"
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

// pastDue and futureDue are due dates relative to the real clock, for
// tests whose handlers' clock is the real one (or pinned to today).
var (
	pastDue   = time.Now().Add(-72 * time.Hour)
	futureDue = time.Now().Add(72 * time.Hour)
)

func TestInvoicesOverdueMarksAndEnqueuesReminders(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	now := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	e.h.Now = func() time.Time { return now }
	// Due dates are judged against the handlers' clock (the tenant's
	// today), not the database's.
	pastDue, futureDue := now.AddDate(0, 0, -3), now.AddDate(0, 0, 3)
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
		for id, day := range map[int64]time.Time{remindedToday: now, remindedYesterday: now.AddDate(0, 0, -1)} {
			if _, err := invoice.ClaimReminder(ctx, tx, id, "x@example.org", day); err != nil {
				return err
			}
			if err := invoice.FinishReminder(ctx, tx, id, invoice.ReminderSent, "x@example.org", day); err != nil {
				return err
			}
		}
		return nil
	})

	for run := range 2 { // a rerun enqueues nothing new
		if err := e.work(tasks.InvoicesOverdue{TenantID: acme.ID, Tick: 1}); err != nil {
			t.Fatalf("run %d: %v", run+1, err)
		}
		for id, want := range map[int64]string{sentLate: "overdue", sentOnTime: "sent", paidLate: "paid", draftLate: "draft"} {
			if got := e.invoiceStatus(t, acme, id); got != want {
				t.Errorf("run %d: invoice %d is %s, want %s", run+1, id, got, want)
			}
		}
		reminders := pendingOfType(t, e.inspector, tasks.QueueLow, tasks.TypeInvoiceReminder)
		got := map[int64]bool{}
		for _, info := range reminders {
			p := decodePayload[tasks.InvoiceReminder](t, info)
			if p.TenantID != acme.ID || p.Day != "2026-03-01" {
				t.Errorf("reminder payload %+v, want tenant %s day 2026-03-01", p, acme.ID)
			}
			if want := (tasks.InvoiceReminder{TenantID: acme.ID, InvoiceID: p.InvoiceID, Day: p.Day}).Spec().TaskID; info.ID != want {
				t.Errorf("reminder task id %q, want %q", info.ID, want)
			}
			got[p.InvoiceID] = true
		}
		want := map[int64]bool{sentLate: true, remindedYesterday: true}
		if fmt.Sprint(got) != fmt.Sprint(want) || len(reminders) != len(want) {
			t.Errorf("run %d: %d reminder tasks for invoices %v, want one each for %v", run+1, len(reminders), got, want)
		}
	}
}

func TestInvoicesOverduePagesThroughManyInvoices(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	acme := e.provision(t, "acme", "Acme")
	const n = 137
	invs := make([]invoice.New, n)
	for i := range invs {
		invs[i] = invoice.New{Number: fmt.Sprintf("N-%d", i), Customer: acmeCustomer, Status: "sent", Currency: "EUR",
			IssuedAt: pastDue, DueAt: pastDue, Lines: []invoice.Line{line("Service", "1", "10.00")}}
	}
	e.inTenant(t, acme, func(ctx context.Context, tx pgx.Tx) error {
		_, err := invoice.Create(ctx, tx, invs...)
		return err
	})
	worker.SetPageSize(e.h, 10)
	if err := e.work(tasks.InvoicesOverdue{TenantID: acme.ID, Tick: 1}); err != nil {
		t.Fatal(err)
	}
	reminders := pendingOfType(t, e.inspector, tasks.QueueLow, tasks.TypeInvoiceReminder)
	seen := map[int64]bool{}
	for _, info := range reminders {
		seen[decodePayload[tasks.InvoiceReminder](t, info).InvoiceID] = true
	}
	if len(reminders) != n || len(seen) != n {
		t.Fatalf("%d reminder tasks for %d distinct invoices, want %d", len(reminders), len(seen), n)
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
	worker.SetPageSize(e.h, 7)
	if err := e.work(tasks.SweepOverdue{Tick: tick}); err != nil {
		t.Fatalf("SweepOverdue: %v", err)
	}
	overdueTasks := pendingOfType(t, e.inspector, tasks.QueueLow, tasks.TypeInvoicesOverdue)
	if len(overdueTasks) != len(active) {
		t.Errorf("sweep enqueued %d invoices:overdue tasks, want %d", len(overdueTasks), len(active))
	}
	seen := map[string]bool{}
	for _, info := range overdueTasks {
		p := decodePayload[tasks.InvoicesOverdue](t, info)
		if _, ok := active[p.TenantID]; !ok {
			t.Errorf("invoices:overdue for tenant %q, which is not an active tenant", p.TenantID)
		}
		if want := (tasks.InvoicesOverdue{TenantID: p.TenantID, Tick: tick}).Spec().TaskID; info.ID != want || p.Tick != tick {
			t.Errorf("task %s carries %+v: id and payload disagree (P4)", info.ID, p)
		}
		if seen[p.TenantID] {
			t.Errorf("tenant %s got two invoices:overdue tasks", p.TenantID)
		}
		seen[p.TenantID] = true
	}

	// Run each enqueued task, as queued, through the production chain.
	for _, info := range overdueTasks {
		if err := e.w.WorkRaw(e.ctx, info.Type, info.Payload); err != nil {
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
	reminders := pendingOfType(t, e.inspector, tasks.QueueLow, tasks.TypeInvoiceReminder)
	if len(reminders) != len(active) {
		t.Errorf("%d reminder tasks, want %d", len(reminders), len(active))
	}
	for _, info := range reminders {
		p := decodePayload[tasks.InvoiceReminder](t, info)
		ti, ok := active[p.TenantID]
		if !ok || p.InvoiceID != ti.invoiceID {
			t.Errorf("reminder %s carries tenant %s invoice %d: not that tenant's invoice (P4)", info.ID, p.TenantID, p.InvoiceID)
		}
		if want := p.Spec().TaskID; info.ID != want {
			t.Errorf("reminder task id %s, payload says %s", info.ID, want)
		}
	}

	// The same tick again (a second replica, a retry) adds no task.
	if err := e.work(tasks.SweepOverdue{Tick: tick}); err != nil {
		t.Fatal(err)
	}
	if n := len(pendingOfType(t, e.inspector, tasks.QueueLow, tasks.TypeInvoicesOverdue)); n != len(active) {
		t.Errorf("after a rerun of tick %d: %d invoices:overdue tasks, want still %d", tick, n, len(active))
	}
}

func TestSweepOverdueHonoursCancelledContext(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	e.provision(t, "acme", "Acme")
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	if err := e.w.Work(ctx, tasks.SweepOverdue{Tick: 1}); err == nil {
		t.Fatal("SweepOverdue with a cancelled ctx succeeded")
	}
	if n := len(pendingOfType(t, e.inspector, tasks.QueueLow, tasks.TypeInvoicesOverdue)); n != 0 {
		t.Fatalf("cancelled sweep enqueued %d tasks", n)
	}
}

// TestSweepSkipsTenantWithFullBacklog: with fair dispatch, a tenant whose
// own backlog is full (at its max_waiting, with reminders say) is skipped
// by the sweep, which says so in its result; every other tenant still gets
// its invoices:overdue for the tick.
func TestSweepSkipsTenantWithFullBacklog(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	rdb := redis.NewClient(&redis.Options{Addr: e.redis.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb), discardLogger(),
		tasks.WithAdmission(tasks.Admission{Dispatcher: fair.New(rdb, fair.Config{}), Tenants: e.catalog}))
	h := *e.h
	h.Enqueuer = enq
	w := workertest.New(&h, worker.MuxOptions{Logger: discardLogger()})

	var ts []tenantctx.Tenant
	for i := range 5 {
		ts = append(ts, e.provision(t, fmt.Sprintf("sweep-%d", i), fmt.Sprintf("Sweep %d", i)))
	}
	slices.SortFunc(ts, func(a, b tenantctx.Tenant) int { return strings.Compare(a.ID, b.ID) })
	full := ts[0] // the first the sweep reaches
	if _, err := e.catalog.SetLimits(e.ctx, full.ID, "", tenantctx.Limits{MaxRunning: 1, MaxWaiting: 1}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // one admitted, one waiting: the backlog is full
		if _, err := enq.Enqueue(e.ctx, tasks.InvoiceReminder{TenantID: full.ID, InvoiceID: int64(i + 1), Day: "2026-01-01"}); err != nil {
			t.Fatal(err)
		}
	}
	const tick = 1767225600
	var buf bytes.Buffer
	if err := w.Work(worker.RecordResults(e.ctx, &buf), tasks.SweepOverdue{Tick: tick}); err != nil {
		t.Fatalf("sweep with one full tenant: %v", err)
	}
	var res struct{ Tenants, Enqueued, Skipped int }
	if err := json.Unmarshal(buf.Bytes(), &res); err != nil || res.Skipped != 1 || res.Enqueued != len(ts)-1 {
		t.Fatalf("sweep result %s (%v); want the full tenant skipped and the %d others enqueued", buf.Bytes(), err, len(ts)-1)
	}
	for _, tn := range ts[1:] {
		id := tasks.InvoicesOverdue{TenantID: tn.ID, Tick: tick}.Spec().TaskID
		if _, err := enq.TenantTask(e.ctx, tn.ID, id); err != nil {
			t.Errorf("tenant %s got no invoices:overdue for the tick: %v", tn.ID, err)
		}
	}
}
