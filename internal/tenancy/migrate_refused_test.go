package tenancy_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestMigrateAllGoesOnPastAFullShard: with queue shards, the critical
// class is one queue per shard, each with its own waiting cap
// (FAIR_MAX_WAITING_TOTAL). MigrateAll stopped at the first tenant whose
// migration a full shard refused, so that the tenants after it in the
// walk, on shards with room, got none: one busy shard held back the
// upgrade of every tenant. It goes on, enqueues theirs, and reports the
// refusals at the end (MigrationsRefusedError, which unwraps to the
// fair.FullError).
func TestMigrateAllGoesOnPastAFullShard(t *testing.T) {
	t.Parallel()
	l, err := tasks.NewLayout(2, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	pool, catalog, docs := catalogOn(t)
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	inspector := asynq.NewInspectorFromRedisClient(rdb)
	service := func(cfg fair.Config) (*tenancy.Service, *fair.Dispatcher) {
		d := fair.New(rdb, cfg)
		enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), inspector, nil,
			tasks.WithAdmission(tasks.Admission{Dispatcher: d, Tenants: catalog}), tasks.WithLayout(l))
		return tenancy.New(tenancy.Config{Catalog: catalog, Enqueuer: enq, Documents: docs, SchemaPool: pool,
			Dispatcher: d, Plans: fair.DefaultPlans()}), d
	}
	// Set up without a cap; no worker runs: the first migration of a
	// shard is admitted, the others wait in their backlogs.
	setup, d := service(fair.Config{MinPending: 1})
	shard := func(tn tenantctx.Tenant) string { return l.Queue(tasks.QueueCritical, tn.ID) }
	provision := func(slug string) tenantctx.Tenant {
		p, err := setup.Provision(ctx, tenancy.NewTenant{Slug: slug}, "test")
		if err != nil {
			t.Fatal(err)
		}
		return p.Tenant
	}
	drain := func(tn tenantctx.Tenant) {
		if n, err := d.Drain(ctx, tn.ID, shard(tn)); err != nil || n.Total() != 1 {
			t.Fatalf("drain %s: %+v, %v", tn.Slug, n, err)
		}
	}
	// A tenant left out of the walk (deleting).
	leaveOut := func(tn tenantctx.Tenant) {
		drain(tn)
		if _, err := catalog.SetStatus(ctx, tn.ID, tenantctx.StatusDeleting); err != nil {
			t.Fatal(err)
		}
	}
	// refused: on the full shard, its migration discarded; open: on the
	// other shard, after refused in the walk (id order), its migration
	// discarded too.
	// refused is taken from the lower half of the ids, so that about half
	// of the tenants after it come after it in the walk too: taken first
	// whatever its id, one near the top left none of the 59 others after
	// it on the other shard about once in thirty runs.
	const lowerHalf = "tn_k" // ids are "tn_" and base32 (a-z, 2-7); in byte order 2-7 and a-j are the lower half
	var refused, open tenantctx.Tenant
	var fillers int
	for i := 0; open.ID == "" || fillers < 2; i++ {
		if i == 60 {
			t.Fatal("60 tenants did not give the shards wanted")
		}
		tn := provision(fmt.Sprintf("tenant-%d", i))
		switch {
		case refused.ID == "" && tn.ID < lowerHalf:
			refused = tn
			drain(tn)
		case refused.ID == "":
			leaveOut(tn)
		case shard(tn) == shard(refused) && fillers < 2:
			fillers++ // the first admitted, the second waiting: the shard is full at a cap of 1
		case shard(tn) != shard(refused) && open.ID == "" && tn.ID > refused.ID:
			open = tn
			drain(tn)
		default:
			leaveOut(tn)
		}
	}

	svc, _ := service(fair.Config{MinPending: 1, MaxWaitingTotal: 1})
	enqueued, err := svc.MigrateAll(ctx)
	var rerr *tenancy.MigrationsRefusedError
	var full *fair.FullError
	if !errors.As(err, &rerr) || rerr.Refused != 1 || !errors.As(err, &full) || full.Queue != shard(refused) {
		t.Fatalf("MigrateAll: %v; want the one migration of %s refused by %s's cap", err, refused.Slug, shard(refused))
	}
	ids := make([]string, 0, len(enqueued))
	for _, m := range enqueued {
		ids = append(ids, m.TenantID)
	}
	if !slices.Contains(ids, open.ID) || slices.Contains(ids, refused.ID) || len(ids) != 3 {
		t.Fatalf("enqueued %v; want %s's (on %s, after the refused %s in the walk) and the two queued already, not %s's",
			ids, open.ID, shard(open), refused.ID, refused.ID)
	}
}
