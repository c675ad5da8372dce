package worker_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestParkedRetryKeepsItsRetryCount: a task that failed once, whose retry
// a worker parks because an operator paused its tenant, is still the task
// that failed once when its tenant looks it up (GET /v1/tasks/{id} answers
// from TenantTask): while parked and once back in its tenant's backlog it
// is pending with retried 1 and its last error kept (the tenant sees
// "temporary failure, will be retried"), as asynq reports it before the
// park and after its next admission, not a fresh task with retried 0.
func TestParkedRetryKeepsItsRetryCount(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	rdb, catalog, d, enq := newFairRedis(t)
	tn := addTenant(t, catalog, "parkretry-acme", tenantctx.StatusActive)

	var attempts atomic.Int64
	reporter := d.NewReporter(discardLogger())
	mux := worker.MuxOf(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog, Reporter: reporter, Parker: d}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(context.Context, tasks.InvoicePDF) error {
			if attempts.Add(1) == 1 {
				return errors.New("connection reset by peer")
			}
			return nil
		}),
	})
	cfg := worker.ServerConfig(worker.ServerOptions{Concurrency: 2, Logger: discardLogger(), ShutdownTimeout: 5 * time.Second})
	cfg.RetryDelayFunc = func(int, error, *asynq.Task) time.Duration { return 2 * time.Second }
	srv := asynq.NewServerFromRedisClient(rdb, cfg)
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		reporter.Close(context.Background())
	})

	res, err := enq.Enqueue(ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Info.ID
	lookup := func() *asynq.TaskInfo {
		t.Helper()
		ti, err := enq.TenantTask(ctx, tn.ID, id)
		if err != nil {
			t.Fatal(err)
		}
		return ti
	}
	testenv.WaitFor(t, time.Minute, "the first attempt failed", func() bool { return lookup().State == asynq.TaskStateRetry })
	if ti := lookup(); ti.Retried != 1 || ti.LastErr == "" {
		t.Fatalf("in asynq's retry set: retried %d, last error %q", ti.Retried, ti.LastErr)
	}
	// The operator pauses the tenant: its retry, when due, is parked.
	if _, err := d.Hold(ctx, tn.ID, fair.Paused, tasks.WorkQueues...); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Minute, "the retry parked", func() bool { return handedBack(t, rdb, d, tn.ID, id) })
	if ti := lookup(); ti.State != asynq.TaskStatePending || ti.Retried != 1 || ti.LastErr == "" {
		t.Errorf("parked retry: state %s, retried %d, last error %q; want pending, 1, kept", ti.State, ti.Retried, ti.LastErr)
	}
	if n := attempts.Load(); n != 1 {
		t.Fatalf("%d attempts while paused", n)
	}
}
