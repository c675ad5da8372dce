package tenancy_test

import (
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
)

// TestRetriedDeletionRequestRecordsTheRealFromStatus: a deletion
// request that fails after marking the tenant deleting (Redis down: its
// backlog cannot be discarded) is retried, as the error asks. The one
// tenant.deletion_requested entry must say which status the tenant was
// deleted from (active), not "deleting", the status the first attempt left.
func TestRetriedDeletionRequestRecordsTheRealFromStatus(t *testing.T) {
	t.Parallel()
	pool, catalog, docs := catalogOn(t)
	srv := testenv.StartRedis(t, testenv.RedisOptions{})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	inspector := asynq.NewInspectorFromRedisClient(rdb)
	d := fair.New(rdb, fair.Config{MinPending: 1})
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), inspector, nil,
		tasks.WithAdmission(tasks.Admission{Dispatcher: d, Tenants: catalog}))
	svc := tenancy.New(tenancy.Config{Catalog: catalog, Enqueuer: enq, Documents: docs, SchemaPool: pool,
		Dispatcher: d, Plans: fair.DefaultPlans()})
	b := &bundle{ctx: t.Context(), catalog: catalog, docs: docs, pool: pool, svc: svc}
	tn := b.active(t, "retried")

	srv.Stop(t)
	if _, err := svc.RequestDeletion(b.ctx, tn.ID, tenancy.ActorAdmin); err == nil {
		t.Fatal("RequestDeletion with Redis down succeeded")
	} else {
		t.Logf("first request, Redis down: %v", err)
	}
	srv.Start(t)
	if _, err := svc.RequestDeletion(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatalf("retried request: %v", err)
	}
	froms := b.deletionRequestedFrom(t, tn.ID)
	if len(froms) != 1 || froms[0] != "active" {
		t.Fatalf("tenant.deletion_requested entries with from = %q; want one, from \"active\"", froms)
	}
}
