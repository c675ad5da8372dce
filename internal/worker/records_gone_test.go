package worker_test

import (
	"context"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestNoTaskRecordOfAGoneTenant: a task whose tenant the catalog no longer
// has (deleted, or never there) is archived without a record for the
// tenant: nobody can ever read it (the tenant cannot authenticate), and
// the record's keys would stay in Redis for TaskRecords' TTL, 90 days,
// after the deletion removed everything else of the tenant. A live
// tenant's archived task is still recorded.
func TestNoTaskRecordOfAGoneTenant(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	_, rdb := newRedisClient(t)
	catalog := memstore.New()
	live := addTenant(t, catalog, "records-live", tenantctx.StatusActive)
	gone := addTenant(t, catalog, "records-gone", tenantctx.StatusActive)
	if err := catalog.DeleteTenant(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	records := tasks.NewTaskRecords(rdb, tasks.TaskRecordsOptions{})
	mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(context.Context, tasks.InvoicePDF) error {
			return worker.Permanentf("refused")
		}),
	})
	startServerOn(t, rdb, mux, worker.ServerOptions{Concurrency: 2, Records: records})
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb), discardLogger())
	ins := asynq.NewInspectorFromRedisClient(rdb)
	for _, tn := range []tenantctx.Tenant{gone, live} {
		res, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1})
		if err != nil {
			t.Fatal(err)
		}
		testenv.WaitTaskState(t, ins, res.Info.Queue, res.Info.ID, asynq.TaskStateArchived)
	}
	if _, err := records.Get(ctx, live.ID, "invoice:pdf:"+live.ID+":1"); err != nil {
		t.Fatalf("the live tenant's archived task has no record: %v", err)
	}
	keys, err := rdb.Keys(ctx, tasks.DefaultTaskRecordsPrefix+"*"+gone.ID+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) > 0 {
		t.Fatalf("task record keys of the deleted tenant after its task was archived: %v", keys)
	}
}
