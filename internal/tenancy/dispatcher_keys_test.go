package tenancy_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
)

// dispatcherTenants returns every tenant id the dispatcher keeps anything
// of on rdb: in a per-tenant key (t:, b:, run:, parked:, kept:) or as a member or
// field of a queue-wide key that is keyed by tenant.
func dispatcherTenants(t *testing.T, ctx context.Context, rdb *redis.Client) map[string][]string {
	t.Helper()
	keys, err := rdb.Keys(ctx, "fair:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, k := range keys {
		_, rest, _ := strings.Cut(k, "}:")
		for _, prefix := range []string{"t:", "b:", "run:", "parked:", "kept:"} {
			if id, ok := strings.CutPrefix(rest, prefix); ok {
				out[id] = append(out[id], k)
			}
		}
		switch rest {
		case "ready", "depth":
			members, err := rdb.ZRange(ctx, k, 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range members {
				out[id] = append(out[id], k)
			}
		case "hold":
			fields, err := rdb.HKeys(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range fields {
				out[id] = append(out[id], k)
			}
		}
	}
	return out
}

// TestAbortedProvisionLeavesNoDispatcherState: a provisioning aborted
// because its tenant:migrate was refused (the critical queue's backlogs
// at MaxWaitingTotal) deletes the tenant's catalog row; nothing of the
// tenant that never was may stay in the dispatcher's keys either, since
// no deletion will ever come to forget it. A refused enqueue stores
// nothing of a tenant without state (fair's enqueueScript), so this holds
// without the abort's Forget
// (TestAbortedProvisionWhoseMigrationGotThroughLeavesNoDispatcherState).
func TestAbortedProvisionLeavesNoDispatcherState(t *testing.T) {
	t.Parallel()
	// No worker: the first migration is admitted to asynq, the second
	// waits in the backlogs, and then the queue is full.
	b := setupFairConfig(t, fair.Config{MinPending: 1, MaxWaitingTotal: 1})
	catalog, svc, rdb, ctx := b.catalog, b.svc, b.rdb, b.ctx
	for _, slug := range []string{"kept-one", "kept-two"} {
		if _, err := svc.Provision(ctx, tenancy.NewTenant{Slug: slug}, tenancy.ActorAdmin); err != nil {
			t.Fatalf("provision %s: %v", slug, err)
		}
	}
	for _, slug := range []string{"refused-one", "refused-two", "refused-three"} {
		if _, err := svc.Provision(ctx, tenancy.NewTenant{Slug: slug}, tenancy.ActorAdmin); !errors.Is(err, fair.ErrQueueFull) {
			t.Fatalf("provision %s past the queue's cap: %v, want fair.ErrQueueFull", slug, err)
		}
	}
	held := dispatcherTenants(t, ctx, rdb)
	for id, keys := range held {
		if _, err := catalog.TenantByID(ctx, id); errors.Is(err, storage.ErrNotFound) {
			t.Errorf("the dispatcher keeps state of tenant %s, which does not exist: %v", id, keys)
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if len(held) != 2 {
		t.Errorf("the dispatcher holds state of %d tenants, want the 2 provisioned: %v", len(held), held)
	}
}

// TestAbortedProvisionWhoseMigrationGotThroughLeavesNoDispatcherState: a
// provisioning whose tenant:migrate enqueue added its task in Redis but
// lost its answer (a read timeout) is aborted all the same; the task
// brought the tenant's policy and its admission into the dispatcher's
// keys, and the abort forgets them (Service.abortProvision), since no
// deletion will ever come for a tenant that never was. A refused enqueue
// stores nothing of the tenant in the first place
// (TestAbortedProvisionLeavesNoDispatcherState).
func TestAbortedProvisionWhoseMigrationGotThroughLeavesNoDispatcherState(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	var before map[string][]string
	hook := &testenv.SendTwice{Lose: true, Once: true,
		Match: func(args []any) bool { return slices.Contains(args, any(tasks.TypeTenantMigrate)) },
		// The enqueue ran in Redis; its answer is about to be lost.
		Between: func() { before = dispatcherTenants(t, b.ctx, b.rdb) }}
	b.rdb.AddHook(hook)
	if _, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: "answer-lost"}, tenancy.ActorAdmin); !errors.Is(err, testenv.ErrReplyLost) {
		t.Fatalf("provision whose migration's enqueue lost its answer: %v, want testenv.ErrReplyLost", err)
	}
	if !hook.Fired() {
		t.Fatal("the hook never ran")
	}
	if len(before) != 1 {
		t.Fatalf("after the enqueue the dispatcher holds state of %d tenants, want the one provisioned: %v", len(before), before)
	}
	if held := dispatcherTenants(t, b.ctx, b.rdb); len(held) != 0 {
		t.Errorf("after the aborted provisioning the dispatcher keeps state of tenants that do not exist: %v", held)
	}
}

// TestDestroyRemovesTaskRecords: the records of a tenant's archived tasks
// (tasks.TaskRecords, kept for the tenant's GET /v1/tasks) go with the
// tenant when it is destroyed: nobody can read them any more, and they
// would otherwise stay in Redis for the records' TTL, 90 days.
func TestDestroyRemovesTaskRecords(t *testing.T) {
	t.Parallel()
	pool, catalog, docs := catalogOn(t)
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	records := tasks.NewTaskRecords(rdb, tasks.TaskRecordsOptions{})
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), asynq.NewInspectorFromRedisClient(rdb), nil).WithTaskRecords(records)
	svc := tenancy.New(tenancy.Config{Catalog: catalog, Enqueuer: enq, Documents: docs, SchemaPool: pool})
	b := &bundle{ctx: t.Context(), catalog: catalog, docs: docs, pool: pool, enqueuer: enq, svc: svc}
	stay := b.active(t, "records-stay")
	gone := b.active(t, "records-gone")
	for _, tn := range []string{stay.ID, gone.ID} {
		for i := range 3 {
			rec := tasks.TaskRecord{TaskID: fmt.Sprintf("invoice:pdf:%s:%d", tn, i), Type: tasks.TypeInvoicePDF, Queue: tasks.QueueDefault, Reason: "task refused"}
			if err := records.Put(b.ctx, tn, rec); err != nil {
				t.Fatal(err)
			}
		}
	}
	d, err := svc.RequestDeletion(b.ctx, gone.ID, tenancy.ActorAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Destroy(b.ctx, d.Tenant, tenancy.ActorWorker); err != nil {
		t.Fatal(err)
	}
	for _, k := range taskRecordKeysOf(t, b.ctx, rdb, gone.ID) {
		t.Errorf("task records of the destroyed tenant remain: %s", k)
	}
	if _, err := records.Get(b.ctx, stay.ID, "invoice:pdf:"+stay.ID+":0"); err != nil {
		t.Fatalf("the other tenant's record: %v", err)
	}
}

// taskRecordKeysOf returns the task-record keys in rdb that name tenant id.
func taskRecordKeysOf(t *testing.T, ctx context.Context, rdb redis.UniversalClient, id string) []string {
	t.Helper()
	keys, err := rdb.Keys(ctx, tasks.DefaultTaskRecordsPrefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var of []string
	for _, k := range keys {
		if strings.Contains(k, id) {
			of = append(of, k)
		}
	}
	return of
}
