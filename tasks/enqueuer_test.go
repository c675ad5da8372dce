package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/testenv"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 65)
	cases := []struct {
		p    Payload
		want string // "" = valid
	}{
		{InvoicePDF{TenantID: "tn_a", InvoiceID: 1}, ""},
		{InvoicePDF{TenantID: "", InvoiceID: 1}, "tenant_id"},
		{InvoicePDF{TenantID: long, InvoiceID: 1}, "tenant_id"},
		{InvoicePDF{TenantID: "Tn_A", InvoiceID: 1}, "tenant_id"},
		{InvoicePDF{TenantID: "tn_a", InvoiceID: 0}, "invoice_id"},
		{InvoicePDF{TenantID: "tn_a", InvoiceID: -3}, "invoice_id"},
		{InvoiceReminder{TenantID: "tn_a", InvoiceID: 1, Day: "2026-03-01"}, ""},
		{InvoiceReminder{TenantID: "tn_a", InvoiceID: 1, Day: ""}, "day"},
		{InvoiceReminder{TenantID: "tn_a", InvoiceID: 1, Day: "2026-3-1"}, "day"},
		{InvoiceReminder{TenantID: "tn_a", InvoiceID: 1, Day: "2026-02-30"}, "day"},
		// Year 0 parses in Go; PostgreSQL's date has no year 0.
		{InvoiceReminder{TenantID: "tn_a", InvoiceID: 1, Day: "0000-01-01"}, "day"},
		{InvoiceReminder{TenantID: "tn_a", InvoiceID: 1, Day: "0000-02-29"}, "day"},
		{InvoiceReminder{TenantID: "tn_a", InvoiceID: 1, Day: "0000-12-31"}, "day"},
		{InvoiceReminder{TenantID: "tn_a", InvoiceID: 1, Day: "1500-02-29"}, "day"}, // not a leap year (Gregorian)
		{InvoiceReminder{TenantID: "tn_a", InvoiceID: 1, Day: "-001-01-01"}, "day"},
		{InvoiceReminder{TenantID: "tn_a", InvoiceID: 1, Day: "10000-01-01"}, "day"},
		{InvoiceReminder{TenantID: "tn_a", InvoiceID: 1, Day: "0001-01-01"}, ""}, // both ends of what both take
		{InvoiceReminder{TenantID: "tn_a", InvoiceID: 1, Day: "9999-12-31"}, ""},
		{InvoiceReminder{TenantID: "tn_a", InvoiceID: 1, Day: "2024-02-29"}, ""},
		{InvoiceReminder{TenantID: "tn_a", InvoiceID: 0, Day: "2026-03-01"}, "invoice_id"},
		{InvoicesOverdue{TenantID: "tn_a", Tick: 1}, ""},
		{InvoicesOverdue{TenantID: "tn_a", Tick: -1}, "tick"},
		{InvoicesOverdue{Tick: 1}, "tenant_id"},
		{SweepOverdue{Tick: 1700000000}, ""},
		{SweepOverdue{Tick: -1}, "tick"},
		{TenantMigrate{TenantID: "tn_a"}, ""},
		{TenantMigrate{TenantID: "tn_a", Target: -1}, "target"},
		{TenantDestroy{TenantID: "tn_a"}, ""},
		{TenantDestroy{}, "tenant_id"},
		{&InvoicePDF{TenantID: "tn_a", InvoiceID: 1}, "unknown payload type"},
		{nil, "nil payload"},
	}
	for _, c := range cases {
		err := Validate(c.p)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("Validate(%#v) = %v, want nil", c.p, err)
		case c.want != "" && (err == nil || !errors.Is(err, ErrInvalidPayload) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("Validate(%#v) = %v, want ErrInvalidPayload mentioning %q", c.p, err, c.want)
		}
	}
}

// TestEnqueueRejectsInvalidPayload: nothing reaches Redis for an invalid
// payload.
func TestEnqueueRejectsInvalidPayload(t *testing.T) {
	t.Parallel()
	redis := newRedis(t)
	enq, inspector := newTestEnqueuer(t, redis)
	if _, err := enq.Enqueue(testContext(t), InvoicePDF{TenantID: "tn_a"}); !errors.Is(err, ErrInvalidPayload) {
		t.Fatalf("err = %v, want ErrInvalidPayload", err)
	}
	if qs, err := inspector.Queues(); err != nil || len(qs) != 0 {
		t.Fatalf("queues after a rejected enqueue = %v, %v; want none", qs, err)
	}
}

// TestEnqueuePDFDedupe: a second PDF request while the first is pending
// returns the same task; once it completed, the next request replaces it.
func TestEnqueuePDFDedupe(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	redis := newRedis(t)
	enq, inspector := newTestEnqueuer(t, redis)
	p := InvoicePDF{TenantID: "tn_acme", InvoiceID: 42}

	first, err := enq.Enqueue(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if first.Existing || first.Info.State != asynq.TaskStatePending || first.Info.Queue != QueueDefault {
		t.Fatalf("first enqueue: existing=%v state=%s queue=%s", first.Existing, first.Info.State, first.Info.Queue)
	}
	var decoded InvoicePDF
	if err := json.Unmarshal(first.Info.Payload, &decoded); err != nil || decoded != p {
		t.Fatalf("payload %s decodes to %+v, %v; want %+v", first.Info.Payload, decoded, err, p)
	}
	second, err := enq.Enqueue(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if !second.Existing || second.Info.ID != first.Info.ID || second.Info.State != asynq.TaskStatePending {
		t.Fatalf("second enqueue while pending: existing=%v id=%s state=%s; want the pending %s",
			second.Existing, second.Info.ID, second.Info.State, first.Info.ID)
	}
	if n := pendingCount(t, inspector, QueueDefault); n != 1 {
		t.Fatalf("%d pending tasks, want 1", n)
	}

	// Complete it (the task is retained for an hour as completed).
	var runs atomic.Int64
	mux := asynq.NewServeMux()
	mux.HandleFunc(TypeInvoicePDF, func(context.Context, *asynq.Task) error { runs.Add(1); return nil })
	startServer(t, redis, mux, 1)
	testenv.WaitTaskState(t, inspector, QueueDefault, first.Info.ID, asynq.TaskStateCompleted)

	third, err := enq.Enqueue(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if third.Existing || third.Info.ID != first.Info.ID {
		t.Fatalf("enqueue after completion: existing=%v id=%s; want a fresh task with the same id", third.Existing, third.Info.ID)
	}
	// The replacement runs too.
	testenv.WaitFor(t, time.Minute, "the replacement to run", func() bool { return runs.Load() == 2 })
	testenv.WaitTaskState(t, inspector, QueueDefault, first.Info.ID, asynq.TaskStateCompleted)
}

// TestEnqueueReminderOnePendingPerDay: one reminder of an invoice is
// pending per day; once it finished, the next enqueue replaces it (the
// worker's reminder row, not the task, keeps it to one email a day); the
// next day is another task.
func TestEnqueueReminderOnePendingPerDay(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	redis := newRedis(t)
	enq, inspector := newTestEnqueuer(t, redis)
	p := InvoiceReminder{TenantID: "tn_acme", InvoiceID: 42, Day: "2026-03-01"}
	first, err := enq.Enqueue(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if first.Info.Queue != QueueLow {
		t.Errorf("reminder queue %s, want %s", first.Info.Queue, QueueLow)
	}
	pending, err := enq.Enqueue(ctx, p)
	if err != nil || !pending.Existing || pending.Info.ID != first.Info.ID || pending.Info.State != asynq.TaskStatePending {
		t.Fatalf("second reminder while the first is pending: %+v, %v; want the pending first one", pending, err)
	}
	mux := asynq.NewServeMux()
	mux.HandleFunc(TypeInvoiceReminder, func(context.Context, *asynq.Task) error { return nil })
	startServer(t, redis, mux, 1)
	testenv.WaitTaskState(t, inspector, QueueLow, first.Info.ID, asynq.TaskStateCompleted)

	again, err := enq.Enqueue(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if again.Existing || again.Info.ID != first.Info.ID {
		t.Fatalf("reminder after the first completed: existing=%v id=%s state=%s; want it replaced under the same id", again.Existing, again.Info.ID, again.Info.State)
	}
	next, err := enq.Enqueue(ctx, InvoiceReminder{TenantID: "tn_acme", InvoiceID: 42, Day: "2026-03-02"})
	if err != nil || next.Existing || next.Info.ID == first.Info.ID {
		t.Fatalf("next day's reminder: %+v, %v; want a new task", next, err)
	}
}

// TestEnqueueConcurrentDedupe: many producers enqueueing the same PDF at
// once end up with one task, all of them reporting its id.
func TestEnqueueConcurrentDedupe(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	redis := newRedis(t)
	enq, inspector := newTestEnqueuer(t, redis)
	const n = 16
	ids := make(chan string, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			res, err := enq.Enqueue(ctx, InvoicePDF{TenantID: "tn_acme", InvoiceID: 9})
			if err != nil {
				errs <- err
				return
			}
			ids <- res.Info.ID
		}()
	}
	for range n {
		select {
		case err := <-errs:
			t.Fatal(err)
		case id := <-ids:
			if id != "invoice:pdf:tn_acme:9" {
				t.Errorf("id %s", id)
			}
		}
	}
	if got := pendingCount(t, inspector, QueueDefault); got != 1 {
		t.Fatalf("%d pending tasks, want 1", got)
	}
}

// TestTenantTask: a tenant sees its own tasks; another tenant's task, a
// system task and an unknown id are all ErrTaskNotFound.
func TestTenantTask(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	redis := newRedis(t)
	enq, _ := newTestEnqueuer(t, redis)
	pdf, err := enq.Enqueue(ctx, InvoicePDF{TenantID: "tn_acme", InvoiceID: 1})
	if err != nil {
		t.Fatal(err)
	}
	migrate, err := enq.Enqueue(ctx, TenantMigrate{TenantID: "tn_acme"})
	if err != nil {
		t.Fatal(err)
	}
	sweep, err := enq.Enqueue(ctx, SweepOverdue{Tick: 1700000000})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{pdf.Info.ID, migrate.Info.ID} {
		info, err := enq.TenantTask(ctx, "tn_acme", id)
		if err != nil || info.ID != id {
			t.Errorf("TenantTask(own %s) = %v, %v", id, info, err)
		}
	}
	for _, c := range []struct{ tenant, id string }{
		{"tn_globex", pdf.Info.ID},
		{"tn_acme", sweep.Info.ID},
		{"tn_acme", "invoice:pdf:tn_acme:404"},
		{"tn_acme", ""},
		{"tn_acme", strings.Repeat("x", 10000)},
		{"", pdf.Info.ID},
	} {
		if _, err := enq.TenantTask(ctx, c.tenant, c.id); !errors.Is(err, ErrTaskNotFound) {
			t.Errorf("TenantTask(%q, %.40q) = %v, want ErrTaskNotFound", c.tenant, c.id, err)
		}
	}
}

func pendingCount(t testing.TB, inspector *asynq.Inspector, queue string) int {
	t.Helper()
	tasks, err := inspector.ListPendingTasks(queue)
	if err != nil {
		t.Fatal(err)
	}
	return len(tasks)
}
