package tenancy_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// lossBundle is a Service with fair dispatch on a Redis of the test's own
// that it restarts empty (no persistence), the dispatcher reading its
// holds from the catalog as in the binaries (fair.Config.Holds:
// Service.Holds).
type lossBundle struct {
	*fairBundle
	srv *testenv.RedisServer
	rdb *redis.Client
}

func setupLoss(t *testing.T) *lossBundle {
	t.Helper()
	pool, catalog, docs := catalogOn(t)
	srv := testenv.StartRedis(t, testenv.RedisOptions{})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return wireLoss(t, pool, catalog, docs, nil, srv, rdb)
}

// wireLoss is setupLoss's Service, dispatcher and enqueuer on rdb (srv's
// client) and the given catalog, documents, main pool and, when not nil,
// tenant database registry.
func wireLoss(t *testing.T, pool *pgxpool.Pool, catalog *storage.Postgres, docs *storage.FS, pools *placement.Registry,
	srv *testenv.RedisServer, rdb *redis.Client) *lossBundle {
	t.Helper()
	inspector := asynq.NewInspectorFromRedisClient(rdb)
	var svc *tenancy.Service
	// Room for every task of these tests: what stays out of asynq is
	// held, not short of room.
	d := fair.New(rdb, fair.Config{MinPending: 20, Holds: func(ctx context.Context) ([]fair.Holding, error) { return svc.Holds(ctx) }})
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), inspector, nil,
		tasks.WithAdmission(tasks.Admission{Dispatcher: d, Tenants: catalog}))
	svc = tenancy.New(tenancy.Config{Catalog: catalog, Enqueuer: enq, Documents: docs, SchemaPool: pool,
		Pools: pools, Dispatcher: d, Plans: fair.DefaultPlans()})
	b := &fairBundle{bundle: &bundle{ctx: t.Context(), catalog: catalog, docs: docs, inspector: inspector, pool: pool, svc: svc}, d: d, enq: enq}
	return &lossBundle{fairBundle: b, srv: srv, rdb: rdb}
}

// renders enqueues the tenant's invoice:pdf tasks of invoices from..to.
func (b *lossBundle) renders(t *testing.T, tn tenantctx.Tenant, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if _, err := b.enq.Enqueue(b.ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: int64(i)}); err != nil {
			t.Fatalf("enqueue render %d of %s: %v", i, tn.Slug, err)
		}
	}
}

// beat is one heartbeat of a worker in every queue.
func (b *lossBundle) beat(t *testing.T) {
	t.Helper()
	for _, q := range (tasks.Layout{}).Queues() {
		if err := b.d.Heartbeat(b.ctx, q, "worker-1", 4, time.Minute); err != nil {
			t.Fatalf("heartbeat in %s: %v", q, err)
		}
	}
}

// inAsynq returns the ids of the tenant's tasks asynq holds in the default
// queue, in any state a worker takes them from or retries them in. It
// reads asynq's keys: after the loss asynq's registry of queues is gone,
// and its inspector knows no queue until the heartbeat or enqueue that
// finds the loss registers it again.
func (b *lossBundle) inAsynq(t *testing.T, tn tenantctx.Tenant) []string {
	t.Helper()
	a := "asynq:{" + tasks.QueueDefault + "}:"
	var ids []string
	for _, key := range []string{"pending", "active"} {
		got, err := b.rdb.LRange(b.ctx, a+key, 0, -1).Result()
		if err != nil {
			t.Fatalf("asynq's %s list: %v", key, err)
		}
		ids = append(ids, got...)
	}
	for _, key := range []string{"retry", "archived", "scheduled"} {
		got, err := b.rdb.ZRange(b.ctx, a+key, 0, -1).Result()
		if err != nil {
			t.Fatalf("asynq's %s set: %v", key, err)
		}
		ids = append(ids, got...)
	}
	ids = slices.DeleteFunc(ids, func(id string) bool { return !strings.Contains(id, tn.ID) })
	slices.Sort(ids)
	return ids
}

// TestPauseSurvivesRedisLosingItsData: a paused tenant's renders, Redis
// restarted empty, the renders enqueued again with one more: none of them
// reaches asynq (no worker can run it), neither at the enqueue nor after a
// worker's heartbeat, while another tenant's render does; the tenant's
// queue answers paused; resuming admits its renders.
func TestPauseSurvivesRedisLosingItsData(t *testing.T) {
	t.Parallel()
	b := setupLoss(t)
	tn := b.active(t, "paused-loss")
	other := b.active(t, "free-loss")
	b.beat(t)
	if _, err := b.svc.PauseQueue(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	b.renders(t, tn, 1, 2)
	b.srv.Restart(t) // no persistence: every key is gone
	b.renders(t, tn, 1, 3)
	b.beat(t)
	b.renders(t, other, 1, 1)
	if ids := b.inAsynq(t, tn); len(ids) != 0 {
		t.Fatalf("the paused tenant's tasks reached asynq after Redis lost its data: %v", ids)
	}
	if ids := b.inAsynq(t, other); len(ids) != 1 {
		t.Fatalf("the other tenant's render in asynq: %v, want it admitted", ids)
	}
	if q := b.queue(t, tn.ID); !q.Paused || inDefault(t, q).Waiting != 3 || q.Admitted != 0 {
		t.Fatalf("the paused tenant after the loss: %+v", q)
	}
	if err := b.svc.ResumeQueue(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	if ids := b.inAsynq(t, tn); len(ids) != 3 {
		t.Fatalf("after the resume asynq holds %v of the tenant, want its 3 renders", ids)
	}
	// Resumed: a later loss does not pause it again.
	b.srv.Restart(t)
	b.renders(t, tn, 4, 4)
	b.beat(t)
	if ids := b.inAsynq(t, tn); len(ids) != 1 || b.queue(t, tn.ID).Paused {
		t.Fatalf("a resumed tenant after a second loss: in asynq %v, queue %+v", ids, b.queue(t, tn.ID))
	}
}

// TestSuspensionHoldSurvivesRedisLosingItsData: the same for a suspended
// tenant: its renders stay in its backlog (none reaches asynq, so no
// worker retries one as not ready), and resuming the tenant admits them.
func TestSuspensionHoldSurvivesRedisLosingItsData(t *testing.T) {
	t.Parallel()
	b := setupLoss(t)
	tn := b.active(t, "suspended-loss")
	b.beat(t)
	if _, err := b.svc.Suspend(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	b.renders(t, tn, 1, 2)
	b.srv.Restart(t)
	b.renders(t, tn, 1, 3)
	b.beat(t)
	if ids := b.inAsynq(t, tn); len(ids) != 0 {
		t.Fatalf("the suspended tenant's tasks reached asynq after Redis lost its data: %v", ids)
	}
	if q := b.queue(t, tn.ID); !q.Suspended || inDefault(t, q).Waiting != 3 || q.Admitted != 0 {
		t.Fatalf("the suspended tenant after the loss: %+v", q)
	}
	if _, err := b.svc.Resume(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	if ids := b.inAsynq(t, tn); len(ids) != 3 {
		t.Fatalf("after the resume asynq holds %v of the tenant, want its 3 renders", ids)
	}
}
