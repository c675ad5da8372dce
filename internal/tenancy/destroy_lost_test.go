package tenancy_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
)

// rowDeletedThenLost is a catalog whose DeleteTenant deletes the row and
// then fails, as when the worker is killed (or its connection breaks)
// right after the delete committed.
type rowDeletedThenLost struct {
	storage.Catalog
}

func (c rowDeletedThenLost) DeleteTenant(ctx context.Context, id string) error {
	if err := c.Catalog.DeleteTenant(ctx, id); err != nil {
		return err
	}
	return errors.New("connection lost after the delete committed")
}

// TestDestroyCutOffAfterTheRowLeavesNothingInRedis: a tenant:destroy cut
// off right after it deleted the catalog row (a SIGKILL, a lost answer)
// may not run again (its retry only finishes the erasure, and a task that
// asynq loses or archives meanwhile not even that), so what Redis keeps of
// the tenant (its fair-dispatch state, the records of its archived tasks)
// must be gone by then, or nothing may ever remove it.
func TestDestroyCutOffAfterTheRowLeavesNothingInRedis(t *testing.T) {
	t.Parallel()
	pool, catalog, docs := catalogOn(t)
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	d := fair.New(rdb, fair.Config{})
	records := tasks.NewTaskRecords(rdb, tasks.TaskRecordsOptions{})
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb), nil,
		tasks.WithAdmission(tasks.Admission{Dispatcher: d, Tenants: catalog})).WithTaskRecords(records)
	cfg := tenancy.Config{Catalog: catalog, Enqueuer: enq, Documents: docs, SchemaPool: pool, Dispatcher: d, Plans: fair.DefaultPlans()}
	svc := tenancy.New(cfg)
	b := &bundle{ctx: t.Context(), catalog: catalog, docs: docs, pool: pool, enqueuer: enq, svc: svc}
	gone := b.active(t, "cut-off")
	for i := range 3 {
		rec := tasks.TaskRecord{TaskID: fmt.Sprintf("invoice:pdf:%s:%d", gone.ID, i), Type: tasks.TypeInvoicePDF, Queue: tasks.QueueDefault, Reason: "task refused"}
		if err := records.Put(b.ctx, gone.ID, rec); err != nil {
			t.Fatal(err)
		}
	}
	del, err := svc.RequestDeletion(b.ctx, gone.ID, tenancy.ActorAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := dispatcherTenants(t, b.ctx, rdb)[gone.ID]; !ok {
		t.Fatal("set-up: the dispatcher keeps nothing of the tenant before its destroy")
	}

	cfg.Catalog = rowDeletedThenLost{Catalog: catalog}
	if _, err := tenancy.New(cfg).Destroy(b.ctx, del.Tenant, tenancy.ActorWorker); err == nil {
		t.Fatal("Destroy with the row delete's answer lost: no error")
	}
	// The retry finds no tenant: Destroy never runs again (the worker
	// runs only FinishErased for it).
	if _, err := catalog.TenantByID(b.ctx, gone.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("catalog row: %v, want it deleted", err)
	}
	if keys := dispatcherTenants(t, b.ctx, rdb)[gone.ID]; len(keys) > 0 {
		t.Errorf("the dispatcher keeps state of the erased tenant for good: %v", keys)
	}
	for _, k := range taskRecordKeysOf(t, b.ctx, rdb, gone.ID) {
		t.Errorf("task records of the erased tenant remain: %s", k)
	}
}

// archivedBeforeTheDelete is a catalog whose DeleteTenant first runs
// meanwhile, as a task of the tenant that resolved it before the delete
// and is archived while Destroy deletes its row.
type archivedBeforeTheDelete struct {
	storage.Catalog
	meanwhile func()
}

func (c archivedBeforeTheDelete) DeleteTenant(ctx context.Context, id string) error {
	c.meanwhile()
	return c.Catalog.DeleteTenant(ctx, id)
}

// TestDestroyForgetsWhatATaskArchivedDuringItLeft: a task of the tenant
// archived after the destroy's first look at Redis and before its row's
// delete (it resolved the tenant earlier) writes its record then; the
// destroy looks at Redis again after the delete, so the record does not
// outlive the erasure (nobody can read it, and it would stay for the
// records' TTL).
func TestDestroyForgetsWhatATaskArchivedDuringItLeft(t *testing.T) {
	t.Parallel()
	pool, catalog, docs := catalogOn(t)
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	records := tasks.NewTaskRecords(rdb, tasks.TaskRecordsOptions{})
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb), nil).WithTaskRecords(records)
	cfg := tenancy.Config{Catalog: catalog, Enqueuer: enq, Documents: docs, SchemaPool: pool}
	b := &bundle{ctx: t.Context(), catalog: catalog, docs: docs, pool: pool, enqueuer: enq, svc: tenancy.New(cfg)}
	gone := b.active(t, "archived-meanwhile")
	del, err := b.svc.RequestDeletion(b.ctx, gone.ID, tenancy.ActorAdmin)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Catalog = archivedBeforeTheDelete{Catalog: catalog, meanwhile: func() {
		rec := tasks.TaskRecord{TaskID: "invoice:pdf:" + gone.ID + ":1", Type: tasks.TypeInvoicePDF, Queue: tasks.QueueDefault, Reason: "task refused"}
		if err := records.Put(b.ctx, gone.ID, rec); err != nil {
			t.Error(err)
		}
	}}
	if _, err := tenancy.New(cfg).Destroy(b.ctx, del.Tenant, tenancy.ActorWorker); err != nil {
		t.Fatal(err)
	}
	for _, k := range taskRecordKeysOf(t, b.ctx, rdb, gone.ID) {
		t.Errorf("a record of the erased tenant's task archived during its destroy remains: %s", k)
	}
}
