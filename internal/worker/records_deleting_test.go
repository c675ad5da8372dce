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

// TestNoTaskRecordOfADeletingTenant: a task of a tenant being deleted is
// archived without running, and without a record for the tenant. Nobody
// can read such a record (the API refuses a deleting tenant), and the
// tenant's destroy deletes its records before its row: one written after
// that (a task archived by another worker while the destroy runs, or on a
// tenant cache's answer that still says deleting once the row is gone)
// would stay in Redis for the records' TTL, 90 days, after the deletion
// removed everything else of the tenant (I12). Here the worker sees the
// tenant deleting and its records already deleted.
func TestNoTaskRecordOfADeletingTenant(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	_, rdb := newRedisClient(t)
	catalog := memstore.New()
	deleting := addTenant(t, catalog, "records-deleting", tenantctx.StatusDeleting)
	records := tasks.NewTaskRecords(rdb, tasks.TaskRecordsOptions{})
	ran := make(chan struct{}, 1)
	mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(context.Context, tasks.InvoicePDF) error {
			ran <- struct{}{}
			return nil
		}),
	})
	startServerOn(t, rdb, mux, worker.ServerOptions{Concurrency: 2, Records: records})
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb), discardLogger())
	res, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: deleting.ID, InvoiceID: 1})
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitTaskState(t, asynq.NewInspectorFromRedisClient(rdb), res.Info.Queue, res.Info.ID, asynq.TaskStateArchived)
	select {
	case <-ran:
		t.Fatal("the task of a tenant being deleted ran")
	default:
	}
	keys, err := rdb.Keys(ctx, tasks.DefaultTaskRecordsPrefix+"*"+deleting.ID+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) > 0 {
		t.Fatalf("task record keys of the tenant being deleted after its task was archived: %v", keys)
	}
}
