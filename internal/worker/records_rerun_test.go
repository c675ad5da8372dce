package worker_test

import (
	"errors"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/tasks"
)

// TestRerunFromDashboardLeavesNoStaleArchiveRecord: an invoice:pdf
// task archived ("invoice not found": record written), then run again
// from the dashboard once the invoice exists (P16: asynq's "run", no
// enqueue, so no forget), completes. Once asynq drops the completed task
// (its retention, 1 h, simulated by deleting it), GET /v1/tasks/{id}
// (Enqueuer.TenantTask) falls back to the stale record and reports the
// task archived with "invoice not found".
func TestRerunFromDashboardLeavesNoStaleArchiveRecord(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	a := e.provision(t, "alpha", "Alpha Tools")
	rdb := redis.NewClient(&redis.Options{Addr: e.redis.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	records := tasks.NewTaskRecords(rdb, tasks.TaskRecordsOptions{})
	e.h.Enqueuer = e.enqueuer.WithTaskRecords(records) // as internal/backend wires it
	startWorker(t, e, e.h, worker.ServerOptions{Concurrency: 2, Records: records})

	r, err := e.h.Enqueuer.Enqueue(e.ctx, tasks.InvoicePDF{TenantID: a.ID, InvoiceID: 1})
	if err != nil {
		t.Fatal(err)
	}
	id := r.Info.ID
	testenv.WaitTaskState(t, e.inspector, tasks.QueueDefault, id, asynq.TaskStateArchived)
	testenv.WaitFor(t, 10e9, "the archive record", func() bool { _, err := records.Get(e.ctx, a.ID, id); return err == nil })

	e.addInvoice(t, a, acmeCustomer, acmeInvoice)                       // id 1
	if err := e.inspector.RunTask(tasks.QueueDefault, id); err != nil { // the dashboard's "run"
		t.Fatal(err)
	}
	testenv.WaitTaskState(t, e.inspector, tasks.QueueDefault, id, asynq.TaskStateCompleted)
	if err := e.inspector.DeleteTask(tasks.QueueDefault, id); err != nil { // retention ran out
		t.Fatal(err)
	}
	info, err := e.h.Enqueuer.TenantTask(e.ctx, a.ID, id)
	if err == nil {
		t.Fatalf("a task that completed is reported %s, last_error %q", info.State, info.LastErr)
	}
	if !errors.Is(err, tasks.ErrTaskNotFound) {
		t.Fatal(err)
	}
}
