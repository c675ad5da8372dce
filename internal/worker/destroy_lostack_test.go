package worker_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// deleteAckLost commits DeleteTenant in PostgreSQL and then reports the
// connection reset, as a client sees a COMMIT whose answer was lost (the
// server restarted, or its backend was terminated, after the commit).
type deleteAckLost struct{ storage.Catalog }

func (c deleteAckLost) DeleteTenant(ctx context.Context, id string) error {
	if err := c.Catalog.DeleteTenant(ctx, id); err != nil {
		return err
	}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	return fmt.Errorf("delete tenant %s: %w", id, reset)
}

// TestTenantDestroyRetriedAfterLostRowDeleteCompletes: a tenant:destroy
// whose catalog row delete committed but whose answer was lost fails and
// is retried; the retry, which finds no tenant, must complete (not be
// archived as "tenant not found") and run the final Redis clean-up the
// failed run never reached, without a second deletion entry.
func TestTenantDestroyRetriedAfterLostRowDeleteCompletes(t *testing.T) {
	t.Parallel()
	e := newHandlerEnv(t, nil)
	rdb := redis.NewClient(&redis.Options{Addr: e.redis.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	records := tasks.NewTaskRecords(rdb, tasks.TaskRecordsOptions{})
	enq := e.enqueuer.WithTaskRecords(records)
	e.h.Tenancy = tenancy.New(tenancy.Config{Catalog: deleteAckLost{e.catalog}, Enqueuer: enq, Documents: e.docs, SchemaPool: e.pool})

	gone := e.provision(t, "lostrow", "Lost Row Ltd")
	if _, err := e.catalog.SetStatus(e.ctx, gone.ID, tenantctx.StatusDeleting); err != nil {
		t.Fatal(err)
	}
	err := e.work(tasks.TenantDestroy{TenantID: gone.ID})
	if err == nil || errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("TenantDestroy with the row delete's answer lost = %v, want an error that is retried", err)
	}
	if _, err := e.catalog.TenantByID(e.ctx, gone.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("catalog row: %v, want it deleted (the delete committed)", err)
	}
	// A task of the tenant, which resolved it before the delete, is
	// archived meanwhile: its record is what the final pass removes.
	rec := tasks.TaskRecord{TaskID: "invoice:pdf:" + gone.ID + ":1", Type: tasks.TypeInvoicePDF, Queue: tasks.QueueDefault, Reason: "task refused"}
	if err := records.Put(e.ctx, gone.ID, rec); err != nil {
		t.Fatal(err)
	}

	// asynq's retry, through the chain, as a worker runs it.
	if err := e.work(tasks.TenantDestroy{TenantID: gone.ID}); err != nil {
		t.Fatalf("retried TenantDestroy = %v, want it completed", err)
	}
	if _, err := records.Get(e.ctx, gone.ID, rec.TaskID); !errors.Is(err, tasks.ErrTaskNotFound) {
		t.Errorf("record of an archived task of the erased tenant after the retry: %v, want it removed", err)
	}
	actions, _ := auditActions(t, e, gone.ID)
	var completed int
	for _, a := range actions {
		if a == string(tenancy.ActionDeletionCompleted) {
			completed++
		}
	}
	if completed != 1 {
		t.Errorf("%d %s entries, want 1 (%v)", completed, tenancy.ActionDeletionCompleted, actions)
	}

	// A destroy of a tenant that was never erased (no such tenant, no
	// deletion recorded) is still archived at once.
	never := tasks.TenantDestroy{TenantID: tenantctx.NewID()}
	if err := e.work(never); !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("TenantDestroy of an unknown tenant = %v, want it archived", err)
	}
}
