package worker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// notReadyLastWait is how long the tests below leave a last attempt facing
// a tenant that is not ready before they make it ready: long enough for a
// worker to have taken it and for asynq to have settled the attempt.
const notReadyLastWait = 3 * time.Second

// keepFast makes a chain bring a kept last attempt back 500 ms to 1 s
// later instead of 45 to 60 s (worker.WithLastAttemptKeep): the tests
// below wait for it to run, and within notReadyLastWait it is kept again
// at least once.
func keepFast(o worker.MuxOptions) worker.MuxOptions {
	return worker.WithLastAttemptKeep(o, 500*time.Millisecond, time.Second)
}

// TestLastAttemptOfWaitingTenantWithFairDispatchRuns: with fair dispatch,
// a task met on its last allowed attempt (a dashboard "run" of tasks
// archived after retries, or a task that failed its retries before its
// tenant was suspended) by a wait the dispatcher does not park is not
// archived unrun: asynq archives a task that fails on its last attempt
// whatever the error, ErrTenantNotReady included, and the park only
// applies to suspended tenants the dispatcher holds. Cases: a tenant
// still provisioning; a tenant the catalog (its cache) still reads
// suspended while the dispatcher no longer holds it (released by a
// resume), whose park answers "not parked". It runs once the tenant is
// active.
func TestLastAttemptOfWaitingTenantWithFairDispatchRuns(t *testing.T) {
	t.Parallel()
	for _, status := range []tenantctx.Status{tenantctx.StatusProvisioning, tenantctx.StatusSuspended} {
		t.Run(string(status), func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			w := newFairWorkerWith(t, keepFast)
			tn := addTenant(t, w.catalog, "last-"+string(status), status) // not held in the dispatcher
			id := injectRetry(t, w.rdb, tn.ID, 1, lastRetry)
			time.Sleep(notReadyLastWait)
			if st := state(t, w.rdb, id); st == "archived" {
				t.Fatalf("the %s tenant's last attempt was archived without running; want it kept until the tenant is active", status)
			}
			if _, err := w.catalog.SetStatus(ctx, tn.ID, tenantctx.StatusActive); err != nil {
				t.Fatal(err)
			}
			testenv.WaitFor(t, 2*time.Minute, "the last attempt runs once the tenant is active", func() bool { return w.runs.Load() == 1 })
			if n := w.retried.Load(); n != lastRetry {
				t.Fatalf("ran with retry count %d, want %d (the waits counted no failure)", n, lastRetry)
			}
		})
	}
}

// TestLastAttemptWithoutFairDispatchIsNotArchived: with FAIR_DISPATCH=false
// (no Parker), a suspended or provisioning tenant's task met on its last
// allowed attempt is not archived unrun; it runs once the tenant is
// active.
func TestLastAttemptWithoutFairDispatchIsNotArchived(t *testing.T) {
	t.Parallel()
	for _, status := range []tenantctx.Status{tenantctx.StatusSuspended, tenantctx.StatusProvisioning} {
		t.Run(string(status), func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			_, rdb := newRedisClient(t)
			catalog := memstore.New()
			tn := addTenant(t, catalog, "nofair-"+string(status), status)
			var runs atomic.Int64
			mux := worker.MuxOf(keepFast(worker.MuxOptions{Logger: discardLogger(), Catalog: catalog, Redis: rdb}), map[string]asynq.Handler{
				tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, _ tasks.InvoicePDF) error {
					runs.Add(1)
					return nil
				}),
			})
			startServerOn(t, rdb, mux, worker.ServerOptions{Concurrency: 2, NotReadyDelayMin: time.Second, NotReadyDelayMax: 2 * time.Second})
			id := injectRetry(t, rdb, tn.ID, 1, lastRetry)
			time.Sleep(notReadyLastWait)
			if st := state(t, rdb, id); st == "archived" {
				t.Fatalf("the %s tenant's last attempt was archived without running; want it kept until the tenant is active", status)
			}
			if _, err := catalog.SetStatus(ctx, tn.ID, tenantctx.StatusActive); err != nil {
				t.Fatal(err)
			}
			testenv.WaitFor(t, 2*time.Minute, "the last attempt runs once the tenant is active", func() bool { return runs.Load() == 1 })
		})
	}
}
