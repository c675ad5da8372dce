package tenancy_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// moveLoss is a lossBundle (its own Redis, which the test can flush, the
// dispatcher putting holds back from the catalog) whose Redis becomes
// unreachable while down is set, with a second tenant database ("second",
// on a PostgreSQL server of its own) to move tenants to.
type moveLoss struct {
	*lossBundle
	pools *placement.Registry
	down  *atomic.Bool
}

func setupMoveLoss(t *testing.T) *moveLoss {
	t.Helper()
	ctx := t.Context()
	pool, catalog, docs := catalogOn(t)
	server := testenv.StartPostgres(t)
	pools := placement.New(placement.Options{MainPool: pool, URLs: map[string]string{"second": server.CreateDatabase(t)},
		Catalog: catalog, MaxConns: 4})
	t.Cleanup(func() { _ = pools.Close() })
	if err := pools.Register(ctx); err != nil {
		t.Fatal(err)
	}
	srv := testenv.StartRedis(t, testenv.RedisOptions{})
	down := new(atomic.Bool)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	rdb.AddHook(failingRedis{down})
	t.Cleanup(func() { _ = rdb.Close() })
	return &moveLoss{lossBundle: wireLoss(t, pool, catalog, docs, pools, srv, rdb), pools: pools, down: down}
}

// service returns another Service on b's Redis, queues and databases,
// whose catalog is catalog: another process's, for calls that race b.svc's.
func (b *moveLoss) service(catalog storage.Catalog) *tenancy.Service {
	return tenancy.New(tenancy.Config{Catalog: catalog, Enqueuer: b.enq, Documents: b.docs, SchemaPool: b.pool,
		Pools: b.pools, Dispatcher: b.d, Plans: fair.DefaultPlans()})
}

// onMain provisions slug on "main" and migrates it, as tenant:migrate
// would: an active tenant to move to "second".
func (b *moveLoss) onMain(t *testing.T, slug string) tenantctx.Tenant {
	t.Helper()
	p, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: slug, Database: "main"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Migrate(b.ctx, p.Tenant, 0, tenancy.ActorWorker); err != nil {
		t.Fatal(err)
	}
	tn, err := b.catalog.TenantByID(b.ctx, p.Tenant.ID)
	if err != nil || tn.Status != tenantctx.StatusActive {
		t.Fatalf("provision %s: %+v, %v; want it active", slug, tn, err)
	}
	return tn
}

// resumeAfterPauseRecord is a catalog whose first write of a pause's
// record saying paused (SetQueuePaused) runs resume once it is saved:
// another operator's whole resume, landing between a move's record of the
// pause it keeps and that pause's hold.
type resumeAfterPauseRecord struct {
	storage.Catalog
	once   sync.Once
	ran    atomic.Bool
	resume func()
}

func (c *resumeAfterPauseRecord) SetQueuePaused(ctx context.Context, id string, paused bool) error {
	err := c.Catalog.SetQueuePaused(ctx, id, paused)
	if err == nil && paused {
		c.once.Do(func() {
			c.ran.Store(true)
			c.resume()
		})
	}
	return err
}

var fastMove = tenancy.MoveOptions{Grace: time.Millisecond, DrainTimeout: 300 * time.Millisecond, Poll: 10 * time.Millisecond}

// TestMoveKeepingItsQueuePausedSettlesARacingResume: a move whose switch
// is not propagated keeps the tenant's queue paused, as an operator's
// pause. Another operator's resume that runs whole between the move's
// record of that pause and its hold (the resume answers success, having
// found no pause to release) loses to the move, which paused after it: the
// queue stays paused, as the move's error says, and the catalog records
// the pause, so after Redis loses its data the tenant's work is still
// held (before, the resume's settle had cleared the record under the
// move's hold, and a loss ran the tenant's tasks against the database its
// other processes may still place it on).
func TestMoveKeepingItsQueuePausedSettlesARacingResume(t *testing.T) {
	t.Parallel()
	b := setupMoveLoss(t)
	tn := b.onMain(t, "moverec-move")
	b.beat(t)
	rc := &resumeAfterPauseRecord{Catalog: unpropagatedPlacement{b.catalog}}
	rc.resume = func() {
		if err := b.svc.ResumeQueue(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
			t.Errorf("the racing resume: %v", err)
		}
	}
	_, err := b.service(rc).Move(b.ctx, tn.ID, "second", "test", fastMove)
	if !errors.Is(err, storage.ErrInvalidationFailed) || !strings.Contains(err.Error(), "queue stays paused") {
		t.Fatalf("Move without propagation: %v, want ErrInvalidationFailed saying the queue stays paused", err)
	}
	if !rc.ran.Load() {
		t.Fatal("the move recorded no pause: the resume did not run")
	}
	checkRecordFollowsRedis(t, b.lossBundle, tn.ID, true)
	if q := inDefault(t, b.queue(t, tn.ID)); q.Moving || !q.Paused {
		t.Fatalf("the queue after the move: %+v, want paused by an operator's pause only", q)
	}
	if ids, paused := afterLoss(t, b.lossBundle, tn); len(ids) != 0 || !paused {
		t.Fatalf("the move kept the queue paused, then Redis lost its data: in asynq %v, paused %v; want none admitted, paused", ids, paused)
	}
	// The audit log ends in the pause the queue is in, after the resume
	// that lost to it.
	entries, err := b.catalog.AuditEntries(b.ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(entries); n < 2 || entries[n-2].Action != string(tenancy.ActionQueueResumed) ||
		entries[n-1].Action != string(tenancy.ActionQueuePaused) || !keptAfterMove(entries[n-1]) {
		var got []string
		for _, e := range entries {
			got = append(got, e.Action+" "+string(e.Detail))
		}
		t.Fatalf("audit log %q, want it to end in the resume, then the pause kept after the move", got)
	}
}

// TestStaleMoveCheckKeepingAQueuePausedLetsARacingResumeStand: a move
// whose switch was not propagated because Redis went away could not pause
// its queue; once Redis is back the workers' stale-move check hands the
// move's hold over to an operator's pause. An operator's resume (as the
// move's error asks once Redis works) that runs whole between the check's
// record of that pause and its hold answers success, and stands, as a
// resume before the check does: the queue runs, the catalog records no
// pause, and after Redis loses its data the tenant's work runs (before,
// the check's hold came after the resume had settled, and the queue stayed
// paused in Redis, unrecorded, although the resume answered success).
func TestStaleMoveCheckKeepingAQueuePausedLetsARacingResumeStand(t *testing.T) {
	t.Parallel()
	b := setupMoveLoss(t)
	tn := b.staleMove(t, "moverec-stale")
	rc := &resumeAfterPauseRecord{Catalog: b.catalog}
	rc.resume = func() {
		if err := b.svc.ResumeQueue(b.ctx, tn.ID, "operator"); err != nil {
			t.Errorf("the racing resume: %v", err)
		}
	}
	released, err := b.service(rc).ReleaseStaleMoves(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rc.ran.Load() {
		t.Fatal("the stale-move check recorded no pause: the resume did not run")
	}
	checkRecordFollowsRedis(t, b.lossBundle, tn.ID, false)
	if q := inDefault(t, b.queue(t, tn.ID)); q.Moving || q.Paused {
		t.Fatalf("the queue after the check (released %v): %+v; the operator's resume answered success, want it running", released, q)
	}
	if ids, paused := afterLoss(t, b.lossBundle, tn); len(ids) != 2 || paused {
		t.Fatalf("resumed, then Redis lost its data: in asynq %v, paused %v; want both renders admitted, not paused", ids, paused)
	}
}

// keptAfterMove reports whether e's detail marks a move's hold kept as an
// operator's pause.
func keptAfterMove(e storage.AuditEntry) bool {
	var d struct {
		Kept bool `json:"kept_after_move"`
	}
	return json.Unmarshal(e.Detail, &d) == nil && d.Kept
}

// staleMove provisions a tenant on main (slug), then runs a move whose
// Redis goes away right after its switch (redisDownAfterSwitch): the
// switch cannot be propagated nor the hold handed over, and only the
// move's own hold keeps the queue held. Redis is back when it returns,
// for the workers' stale-move check to hand that hold over.
func (b *moveLoss) staleMove(t *testing.T, slug string) tenantctx.Tenant {
	t.Helper()
	tn := b.onMain(t, slug)
	b.beat(t)
	_, err := b.service(redisDownAfterSwitch{b.catalog, b.down}).Move(b.ctx, tn.ID, "second", "test", fastMove)
	if !errors.Is(err, storage.ErrInvalidationFailed) || !strings.Contains(err.Error(), "queue stays paused") {
		t.Fatalf("Move with Redis gone after the switch: %v, want ErrInvalidationFailed saying the queue stays paused", err)
	}
	b.down.Store(false) // Redis is back
	if q := inDefault(t, b.queue(t, tn.ID)); !q.Moving {
		t.Fatalf("set-up: the queue after the move: %+v, want held by the move", q)
	}
	return tn
}
