package worker_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/internal/worker/workertest"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// staleCatalog answers for the tenants it holds as they were (a worker's
// tenant cache that has not yet seen their rows deleted: the
// invalidation on its way, or lost), and asks the catalog for the rest.
type staleCatalog struct {
	storage.Catalog
	stale map[string]tenantctx.Tenant
}

func (c staleCatalog) TenantByID(ctx context.Context, id string) (tenantctx.Tenant, error) {
	if tn, ok := c.stale[id]; ok {
		return tn, nil
	}
	return c.Catalog.TenantByID(ctx, id)
}

// erasedWithLateEnqueue erases a tenant (deletion requested, its destroy
// run to completion), then enqueues a render of it through a lookup that
// still has it active, as an enqueue service's cache does for a second:
// the dispatcher holds the tenant's state again. It returns the tenant as
// it was while being deleted.
func erasedWithLateEnqueue(t *testing.T, e *erasureEnv, slug string) tenantctx.Tenant {
	t.Helper()
	tn := e.provision(t, slug, slug)
	if _, err := e.svc.RequestDeletion(e.ctx, tn.ID, tenancy.ActorWorker); err != nil {
		t.Fatal(err)
	}
	deleting, err := e.catalog.TenantByID(e.ctx, tn.ID)
	if err != nil || deleting.Status != tenantctx.StatusDeleting {
		t.Fatalf("tenant after its deletion request: %+v, %v", deleting, err)
	}
	if err := e.work(tasks.TenantDestroy{TenantID: tn.ID}); err != nil {
		t.Fatalf("destroy: %v", err)
	}
	if tr := fairTraces(t, e.rdb, tn.ID); len(tr) > 0 {
		t.Fatalf("after the destroy: %v", tr)
	}
	late := e.enqueuerOf(staleLookup{tn.ID: tn})
	if _, err := late.Enqueue(e.ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1}); err != nil {
		t.Fatal(err)
	}
	if tr := fairTraces(t, e.rdb, tn.ID); len(tr) == 0 {
		t.Fatal("no state of the tenant after the late enqueue")
	}
	return deleting
}

// TestLateTaskOfErasedTenantSeenDeletingIsForgotten: the worker that meets
// a late enqueue's task may still see the tenant marked deleting (its
// cache has not seen the row deleted yet, or the deletion's invalidation
// was lost: Destroy only logs that). The task is archived as a deleting
// tenant's, and, the erasure being recorded, what the enqueue gave the
// dispatcher goes too: no later task would come to forget it.
func TestLateTaskOfErasedTenantSeenDeletingIsForgotten(t *testing.T) {
	t.Parallel()
	e := newErasureEnv(t)
	deleting := erasedWithLateEnqueue(t, e, "stale-deleting")

	w := workertest.New(e.h, worker.MuxOptions{Logger: discardLogger(), Catalog: staleCatalog{e.catalog, map[string]tenantctx.Tenant{deleting.ID: deleting}}})
	if err := w.Work(e.ctx, tasks.InvoicePDF{TenantID: deleting.ID, InvoiceID: 1}); !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("task of a tenant seen deleting = %v, want it archived", err)
	}
	if tr := fairTraces(t, e.rdb, deleting.ID); len(tr) > 0 {
		t.Errorf("what the late enqueue gave the dispatcher of the erased tenant stays in Redis: %v", tr)
	}
}

// TestTaskOfADeletingTenantKeepsItsStateUntilErased: a task of a tenant
// marked deleting whose destroy has not completed is archived as before
// and forgets nothing (the destroy forgets the tenant).
func TestTaskOfADeletingTenantKeepsItsStateUntilErased(t *testing.T) {
	t.Parallel()
	e := newErasureEnv(t)
	tn := e.provision(t, "still-deleting", "Still Deleting")
	if _, err := e.enq.Enqueue(e.ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.RequestDeletion(e.ctx, tn.ID, tenancy.ActorWorker); err != nil {
		t.Fatal(err)
	}
	before := fairTraces(t, e.rdb, tn.ID)
	if len(before) == 0 {
		t.Fatal("no state of the tenant being deleted")
	}
	if err := e.work(tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 3}); !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("task of a tenant being deleted = %v, want it archived", err)
	}
	if after := fairTraces(t, e.rdb, tn.ID); len(after) != len(before) {
		t.Errorf("state of a tenant being deleted, not erased yet: %v, was %v", after, before)
	}
}

// staleOnce answers for one tenant as it was at its first look-up only
// (a cache whose invalidation arrives while the task runs), then asks the
// catalog.
type staleOnce struct {
	storage.Catalog
	tn    tenantctx.Tenant
	asked *atomic.Bool
}

func (c staleOnce) TenantByID(ctx context.Context, id string) (tenantctx.Tenant, error) {
	if id == c.tn.ID && c.asked.CompareAndSwap(false, true) {
		return c.tn, nil
	}
	return c.Catalog.TenantByID(ctx, id)
}

// TestLateTaskOfErasedTenantRunOnAStaleAnswerIsForgotten: a late
// enqueue's task that a stale answer (the tenant still active) let run
// fails on what the erasure removed; the re-check finds no tenant and
// archives it, and, the erasure being recorded, what the enqueue gave
// the dispatcher goes too.
func TestLateTaskOfErasedTenantRunOnAStaleAnswerIsForgotten(t *testing.T) {
	t.Parallel()
	e := newErasureEnv(t)
	deleting := erasedWithLateEnqueue(t, e, "stale-active")
	active := deleting
	active.Status = tenantctx.StatusActive

	w := workertest.New(e.h, worker.MuxOptions{Logger: discardLogger(), Catalog: staleOnce{e.catalog, active, new(atomic.Bool)}})
	err := w.Work(e.ctx, tasks.InvoicePDF{TenantID: active.ID, InvoiceID: 1})
	if !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("task of an erased tenant run on a stale answer = %v, want it archived", err)
	}
	if tr := fairTraces(t, e.rdb, active.ID); len(tr) > 0 {
		t.Errorf("what the late enqueue gave the dispatcher of the erased tenant stays in Redis: %v", tr)
	}
}

// TestLateMigrationOfErasedTenantRunOnAStaleAnswerIsForgotten: a
// tenant:migrate of migrate --all, enqueued for a tenant read from a page
// before its erasure, and run on a stale answer (the tenant still active)
// fails with the lifecycle's refusal (its schema is gone): a permanent
// error of its own, not one of the chain. The task is archived as its
// tenant's deletion's (the re-check finds no tenant), and, the erasure
// being recorded, what the enqueue gave the dispatcher goes too, as for
// any other task a stale answer let run.
func TestLateMigrationOfErasedTenantRunOnAStaleAnswerIsForgotten(t *testing.T) {
	t.Parallel()
	e := newErasureEnv(t)
	tn := e.provision(t, "stale-migrate", "Stale Migrate")
	if _, err := e.svc.RequestDeletion(e.ctx, tn.ID, tenancy.ActorWorker); err != nil {
		t.Fatal(err)
	}
	if err := e.work(tasks.TenantDestroy{TenantID: tn.ID}); err != nil {
		t.Fatalf("destroy: %v", err)
	}
	late := e.enqueuerOf(staleLookup{tn.ID: tn})
	if _, err := late.Enqueue(e.ctx, tasks.TenantMigrate{TenantID: tn.ID}); err != nil {
		t.Fatal(err)
	}
	if tr := fairTraces(t, e.rdb, tn.ID); len(tr) == 0 {
		t.Fatal("no state of the tenant after the late enqueue")
	}

	w := workertest.New(e.h, worker.MuxOptions{Logger: discardLogger(), Catalog: staleOnce{e.catalog, tn, new(atomic.Bool)}, Erased: e.svc})
	err := w.Work(e.ctx, tasks.TenantMigrate{TenantID: tn.ID})
	if !errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "was deleted while") {
		t.Errorf("migration of an erased tenant run on a stale answer = %v, want it archived as its tenant's deletion's", err)
	}
	if tr := fairTraces(t, e.rdb, tn.ID); len(tr) > 0 {
		t.Errorf("what the late enqueue gave the dispatcher of the erased tenant stays in Redis: %v", tr)
	}
}
