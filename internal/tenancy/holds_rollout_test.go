package tenancy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestHoldsThroughAServiceServingFewerShards follows the documented change
// from one queue shard to two: QUEUE_SHARDS_SERVED=2 rolled out (workers
// first: theirs serve default_1 and put its holds back from the catalog),
// then QUEUE_SHARDS=2. An operator's pause and suspension made, and lifted,
// through an enqueue service not yet rolled out (serving one shard) must
// hold, and release, the tenant in the shard its tasks go to once
// QUEUE_SHARDS is 2, as the catalog records them.
func TestHoldsThroughAServiceServingFewerShards(t *testing.T) {
	t.Parallel()
	pool, catalog, docs := catalogOn(t)
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	inspector := asynq.NewInspectorFromRedisClient(rdb)
	layout := func(shards, served int) tasks.Layout {
		l, err := tasks.NewLayout(shards, served)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	// The holds Redis lost are put back from the catalog, as the workers'
	// heartbeats do (backend.Open): through a service serving two shards.
	var rolled *tenancy.Service
	d := fair.New(rdb, fair.Config{MinPending: 1, Holds: func(ctx context.Context) ([]fair.Holding, error) { return rolled.Holds(ctx) }})
	service := func(l tasks.Layout) (*tenancy.Service, *tasks.Enqueuer) {
		enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), inspector, nil,
			tasks.WithAdmission(tasks.Admission{Dispatcher: d, Tenants: catalog}), tasks.WithLayout(l))
		return tenancy.New(tenancy.Config{Catalog: catalog, Enqueuer: enq, Documents: docs, SchemaPool: pool,
			Dispatcher: d, Plans: fair.DefaultPlans()}), enq
	}
	old, _ := service(layout(1, 1))
	rolled, _ = service(layout(1, 2))
	_, after := service(layout(2, 2))
	b := &bundle{ctx: t.Context(), catalog: catalog, docs: docs, inspector: inspector, pool: pool, svc: old}
	// A worker serving two shards heartbeats every queue it serves.
	beat := func() {
		t.Helper()
		for _, q := range layout(1, 2).Queues() {
			if err := d.Heartbeat(b.ctx, q, "worker-1", 1, time.Minute); err != nil {
				t.Fatal(err)
			}
		}
	}
	beat()

	// Two tenants whose tasks go to default_1 once QUEUE_SHARDS is 2.
	var tns []tenantctx.Tenant
	for i := 0; len(tns) < 2; i++ {
		if i == 40 {
			t.Fatal("40 tenants, none of them on default_1 under two shards")
		}
		tn := b.active(t, fmt.Sprintf("rollout-%d", i))
		if tasks.ShardOf(tn.ID, 2) == 1 {
			tns = append(tns, tn)
		}
	}
	paused, suspended := tns[0], tns[1]
	if _, err := old.PauseQueue(b.ctx, paused.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Suspend(b.ctx, suspended.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	beat()

	// QUEUE_SHARDS=2: each tenant's next render goes to default_1.
	newShard := tasks.ShardQueue(tasks.QueueDefault, 1)
	for _, tn := range tns {
		if _, err := after.Enqueue(b.ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1}); err != nil {
			t.Fatal(err)
		}
	}
	inNewShard := func(id string) fair.QueueStats {
		t.Helper()
		st, err := d.Stats(b.ctx, id, newShard)
		if err != nil {
			t.Fatal(err)
		}
		return st[0]
	}
	if s := inNewShard(paused.ID); !s.Paused || s.Admitted != 0 || s.Waiting != 1 {
		t.Errorf("tenant paused through a service serving one shard, in %s: %+v; want paused, its render waiting", newShard, s)
	}
	if s := inNewShard(suspended.ID); !s.Suspended || s.Admitted != 0 || s.Waiting != 1 {
		t.Errorf("tenant suspended through a service serving one shard, in %s: %+v; want suspended, its render waiting", newShard, s)
	}

	// Held through the rolled-out service, lifted through the old one.
	if err := old.ResumeQueue(b.ctx, paused.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Resume(b.ctx, suspended.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	for _, tn := range tns {
		if _, err := rolled.PauseQueue(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
			t.Fatal(err)
		}
		if err := old.ResumeQueue(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
			t.Fatal(err)
		}
		if s := inNewShard(tn.ID); s.Paused || s.Suspended {
			t.Errorf("tenant paused through a service serving two shards, resumed through one serving one, in %s: %+v; want no hold", newShard, s)
		}
	}
}
