package tenancy_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// fairBundle is a Service with fair dispatch (no worker: at most one task
// is admitted per queue, the rest waits).
type fairBundle struct {
	*bundle
	d   *fair.Dispatcher
	enq *tasks.Enqueuer
	rdb *redis.Client // the Redis of d and enq
}

func setupFair(t *testing.T) *fairBundle {
	t.Helper()
	return setupFairWith(t, tasks.Layout{})
}

// setupFairWith is setupFair with the queue layout l.
func setupFairWith(t *testing.T, l tasks.Layout) *fairBundle {
	t.Helper()
	return setupFairConfig(t, fair.Config{MinPending: 1}, tasks.WithLayout(l))
}

// setupFairConfig is setupFair with a dispatcher of cfg and an enqueuer
// of opts.
func setupFairConfig(t *testing.T, cfg fair.Config, opts ...tasks.Option) *fairBundle {
	t.Helper()
	pool, catalog, docs := catalogOn(t)
	d, enq, inspector, rdb := fairOnConfig(t, catalog, cfg, opts...)
	svc := tenancy.New(tenancy.Config{Catalog: catalog, Enqueuer: enq, Documents: docs, SchemaPool: pool,
		Dispatcher: d, Plans: fair.DefaultPlans()})
	return &fairBundle{bundle: &bundle{ctx: t.Context(), catalog: catalog, docs: docs, inspector: inspector, pool: pool, svc: svc}, d: d, enq: enq, rdb: rdb}
}

// fairOn returns a dispatcher, an enqueuer admitting the tenants of
// catalog through it (with opts), and an inspector, on a fresh Redis.
func fairOn(t *testing.T, catalog *storage.Postgres, opts ...tasks.Option) (*fair.Dispatcher, *tasks.Enqueuer, *asynq.Inspector) {
	t.Helper()
	d, enq, inspector, _ := fairOnConfig(t, catalog, fair.Config{MinPending: 1}, opts...)
	return d, enq, inspector
}

// fairOnConfig is fairOn with a dispatcher of cfg, and the Redis client
// under them.
func fairOnConfig(t *testing.T, catalog *storage.Postgres, cfg fair.Config, opts ...tasks.Option) (*fair.Dispatcher, *tasks.Enqueuer, *asynq.Inspector, *redis.Client) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	inspector := asynq.NewInspectorFromRedisClient(rdb)
	d := fair.New(rdb, cfg)
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), inspector, nil,
		append([]tasks.Option{tasks.WithAdmission(tasks.Admission{Dispatcher: d, Tenants: catalog})}, opts...)...)
	return d, enq, inspector, rdb
}

func (b *fairBundle) pdfs(t *testing.T, tn tenantctx.Tenant, n int) {
	t.Helper()
	for i := range n {
		if _, err := b.enq.Enqueue(b.ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: int64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
}

// inDefault returns q's figures of the default queue (provisioning also
// admitted the tenant's tenant:migrate in the critical queue, which these
// tests run directly).
func inDefault(t *testing.T, q tenancy.Queue) fair.QueueStats {
	t.Helper()
	for _, s := range q.Queues {
		if s.Queue == tasks.QueueDefault {
			return s
		}
	}
	t.Fatalf("no default queue in %+v", q)
	return fair.QueueStats{}
}

func (b *fairBundle) queue(t *testing.T, id string) tenancy.Queue {
	t.Helper()
	q, err := b.svc.Queue(b.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// TestSuspendHoldsBacklogResumeReleases: suspending holds the backlog
// (the admitted task that had not started goes back to it), resuming
// admits it again; migrations still run for a suspended tenant.
func TestSuspendHoldsBacklogResumeReleases(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	tn := b.active(t, "held-acme")
	b.pdfs(t, tn, 4)
	if q := b.queue(t, tn.ID); inDefault(t, q).Waiting != 3 || inDefault(t, q).Admitted != 1 || q.Policy != fair.DefaultPlans()["free"] {
		t.Fatalf("before suspend: %+v", q)
	}
	if _, err := b.svc.Suspend(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	q := b.queue(t, tn.ID)
	if d := inDefault(t, q); d.Waiting != 4 || d.Admitted != 0 || !q.Suspended || q.WaitingByType[tasks.TypeInvoicePDF] != 4 {
		t.Fatalf("suspended: %+v", q)
	}
	if _, err := b.svc.MigrateAll(b.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.inspector.GetTaskInfo(tasks.QueueCritical, "tenant:migrate:"+tn.ID); err != nil {
		t.Fatalf("a suspended tenant's migration was not admitted: %v", err)
	}
	if _, err := b.svc.Resume(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	if q := b.queue(t, tn.ID); q.Suspended || inDefault(t, q).Admitted != 1 || inDefault(t, q).Waiting != 3 {
		t.Fatalf("resumed: %+v", q)
	}
}

// TestPauseResumeDrainQueue: an operator's pause holds everything (also
// migrations), resume releases, drain discards only this tenant's tasks,
// and each leaves an audit entry.
func TestPauseResumeDrainQueue(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	tn := b.active(t, "paused-acme")
	other := b.active(t, "other-acme")
	b.pdfs(t, tn, 5)
	b.pdfs(t, other, 2)
	moved, err := b.svc.PauseQueue(b.ctx, tn.ID, tenancy.ActorAdmin)
	if err != nil {
		t.Fatal(err)
	}
	// Everything goes back, the tenant's pending tenant:migrate too.
	if q := b.queue(t, tn.ID); !q.Paused || q.Admitted != 0 || q.Waiting != 6 || moved != 2 {
		t.Fatalf("paused (moved back %d): %+v", moved, q)
	}
	if err := b.svc.ResumeQueue(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	if q := b.queue(t, tn.ID); q.Paused {
		t.Fatalf("resumed: %+v", q)
	}
	n, err := b.svc.DrainQueue(b.ctx, tn.ID, tenancy.ActorAdmin)
	if err != nil || n.Total() != 6 {
		t.Fatalf("drain = %+v, %v; want 6 discarded (5 renders and the migration)", n, err)
	}
	if q := b.queue(t, tn.ID); q.Waiting+q.Admitted != 0 {
		t.Fatalf("after drain: %+v", q)
	}
	if q := inDefault(t, b.queue(t, other.ID)); q.Waiting+q.Admitted != 2 {
		t.Fatalf("the other tenant lost tasks: %+v", q)
	}
	var actions []string
	for _, e := range b.audit(t, tn.ID) {
		actions = append(actions, e.Action)
	}
	for _, want := range []tenancy.Action{tenancy.ActionQueuePaused, tenancy.ActionQueueResumed, tenancy.ActionQueueDrained} {
		found := false
		for _, a := range actions {
			found = found || a == string(want)
		}
		if !found {
			t.Errorf("audit %v lacks %s", actions, want)
		}
	}
}

// TestDeletionDiscardsBacklog: a deletion request discards the tenant's
// waiting tasks (and says how many) and lifts its holds, so the destroy is
// admitted even for a paused tenant.
func TestDeletionDiscardsBacklog(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	tn := b.active(t, "gone-acme")
	b.pdfs(t, tn, 6)
	if _, err := b.svc.PauseQueue(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	d, err := b.svc.RequestDeletion(b.ctx, tn.ID, tenancy.ActorAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.inspector.GetTaskInfo(tasks.QueueCritical, d.TaskID); err != nil {
		t.Fatalf("destroy not admitted: %v", err)
	}
	q := b.queue(t, tn.ID)
	if q.Waiting != 0 || q.Paused {
		t.Fatalf("after the deletion request: %+v", q)
	}
	for _, e := range b.audit(t, tn.ID) {
		if e.Action == string(tenancy.ActionDeletionRequested) && string(e.Detail) != "" && !strings.Contains(string(e.Detail), `"discarded": 7`) {
			t.Fatalf("deletion request detail %s, want 7 discarded (6 renders and the migration)", e.Detail)
		}
	}
}

func TestSetLimitsAndNoDispatch(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	tn := b.active(t, "limits-acme")
	got, err := b.svc.SetLimits(b.ctx, tn.ID, "pro", tenantctx.Limits{MaxWaiting: 2}, tenancy.ActorAdmin)
	if err != nil || got.Plan != "pro" || got.Limits.MaxWaiting != 2 {
		t.Fatalf("SetLimits = %+v, %v", got, err)
	}
	if q := b.queue(t, tn.ID); q.Policy.MaxWaiting != 2 || q.Policy.Weight != fair.DefaultPlans()["pro"].Weight {
		t.Fatalf("policy after SetLimits: %+v", q.Policy)
	}
	if _, err := b.svc.SetLimits(b.ctx, tn.ID, "", tenantctx.Limits{Weight: -1}, tenancy.ActorAdmin); !errors.Is(err, tenantctx.ErrInvalidLimits) {
		t.Fatalf("invalid limits: %v", err)
	}
	plain := setup(t)
	other := plain.active(t, "nodispatch")
	if _, err := plain.svc.Queue(plain.ctx, other.ID); !errors.Is(err, tenancy.ErrNoDispatch) {
		t.Fatalf("Queue without dispatch: %v, want ErrNoDispatch", err)
	}
}

// TestSetLimitsReachTheBacklog: limits set while the tenant has a backlog
// apply to it at once, not only once the tenant enqueues again (the
// dispatcher kept the policy of the last enqueue).
func TestSetLimitsReachTheBacklog(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	tn := b.active(t, "limits-backlog")
	b.pdfs(t, tn, 3)
	if _, err := b.svc.SetLimits(b.ctx, tn.ID, "", tenantctx.Limits{Weight: 3, MaxRunning: 1, MaxWaiting: 7}, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	want := fair.Policy{Weight: 3, MaxRunning: 1, MaxWaiting: 7}
	if d := inDefault(t, b.queue(t, tn.ID)); d.Policy != want || d.Waiting != 2 || d.Admitted != 1 {
		t.Fatalf("default queue after SetLimits: %+v, want policy %+v", d, want)
	}
}

// TestQueueOperationsOverShards: with three queue shards, tenants on
// different shards of the default class are each reported, paused,
// resumed, suspended and drained in their own shard, and no other
// tenant's tasks move.
func TestQueueOperationsOverShards(t *testing.T) {
	t.Parallel()
	l, err := tasks.NewLayout(3, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := setupFairWith(t, l)
	// One tenant per shard of default, until two shards are covered.
	byShard := map[string]tenantctx.Tenant{}
	for i := 0; len(byShard) < 2; i++ {
		if i == 40 {
			t.Fatalf("40 tenants all hashed to %v", byShard)
		}
		tn := b.active(t, fmt.Sprintf("shard-%d", i))
		if q := l.Queue(tasks.QueueDefault, tn.ID); byShard[q].ID == "" {
			byShard[q] = tn
		}
	}
	inShard := func(q tenancy.Queue, queue string) fair.QueueStats {
		t.Helper()
		for _, s := range q.Queues {
			if s.Queue == queue {
				return s
			}
		}
		t.Fatalf("no queue %s in %+v", queue, q)
		return fair.QueueStats{}
	}
	for queue, tn := range byShard {
		b.pdfs(t, tn, 3)
		q := b.queue(t, tn.ID)
		if s := inShard(q, queue); s.Waiting != 2 || s.Admitted != 1 || q.Waiting != 2 {
			t.Fatalf("%s in %s: %+v", tn.ID, queue, q)
		}
		if len(q.Queues) != len(l.TenantQueues(tn.ID)) {
			t.Errorf("%s: %d queues reported, want its %v", tn.ID, len(q.Queues), l.TenantQueues(tn.ID))
		}
		if info, err := b.inspector.GetTaskInfo(queue, fmt.Sprintf("invoice:pdf:%s:1", tn.ID)); err != nil || info.State != asynq.TaskStatePending {
			t.Fatalf("%s: admitted task not in %s: %+v, %v", tn.ID, queue, info, err)
		}
	}
	var first, second tenantctx.Tenant
	var firstQ, secondQ string
	for queue, tn := range byShard {
		if first.ID == "" {
			first, firstQ = tn, queue
		} else if second.ID == "" {
			second, secondQ = tn, queue
		}
	}
	if _, err := b.svc.PauseQueue(b.ctx, first.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	if q := b.queue(t, first.ID); !q.Paused || inShard(q, firstQ).Waiting != 3 || inShard(q, firstQ).Admitted != 0 {
		t.Fatalf("paused %s: %+v", first.ID, q)
	}
	if q := b.queue(t, second.ID); q.Paused || inShard(q, secondQ).Admitted != 1 {
		t.Fatalf("pausing %s touched %s: %+v", first.ID, second.ID, q)
	}
	if err := b.svc.ResumeQueue(b.ctx, first.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	if q := b.queue(t, first.ID); q.Paused || inShard(q, firstQ).Admitted != 1 {
		t.Fatalf("resumed %s: %+v", first.ID, q)
	}
	if _, err := b.svc.Suspend(b.ctx, second.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	if q := b.queue(t, second.ID); !q.Suspended || inShard(q, secondQ).Waiting != 3 {
		t.Fatalf("suspended %s: %+v", second.ID, q)
	}
	if _, err := b.svc.Resume(b.ctx, second.ID, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	if q := b.queue(t, second.ID); q.Suspended || inShard(q, secondQ).Admitted != 1 {
		t.Fatalf("resumed %s: %+v", second.ID, q)
	}
	// Besides its PDFs (2 waiting, 1 admitted) the tenant has its
	// provisioning's tenant:migrate in the critical queue, admitted or
	// waiting behind another tenant's (one pending task per queue here).
	before := b.queue(t, first.ID)
	n, err := b.svc.DrainQueue(b.ctx, first.ID, tenancy.ActorAdmin)
	if err != nil || n.Waiting != before.Waiting || n.Admitted != before.Admitted ||
		inShard(before, firstQ).Waiting != 2 || inShard(before, firstQ).Admitted != 1 {
		t.Fatalf("drain %s = %+v, %v; want the %d waiting and %d admitted of %+v", first.ID, n, err, before.Waiting, before.Admitted, before)
	}
	if q := b.queue(t, first.ID); q.Waiting != 0 || q.Admitted != 0 {
		t.Fatalf("drained %s: %+v", first.ID, q)
	}
	if q := b.queue(t, second.ID); inShard(q, secondQ).Waiting != 2 || inShard(q, secondQ).Admitted != 1 {
		t.Fatalf("draining %s touched %s: %+v", first.ID, second.ID, q)
	}
}

// TestQueueOperationsOnDeletingTenant: a tenant being deleted cannot be
// paused, drained or given new limits (each would stop or discard the
// tenant:destroy that erases it); its destroy stays admitted, and resume
// (a no-op: the deletion lifted the holds) is allowed.
func TestQueueOperationsOnDeletingTenant(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	tn := b.active(t, "leaving-acme")
	b.pdfs(t, tn, 3)
	d, err := b.svc.RequestDeletion(b.ctx, tn.ID, tenancy.ActorAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.PauseQueue(b.ctx, tn.ID, tenancy.ActorAdmin); !errors.Is(err, tenancy.ErrRefused) {
		t.Fatalf("PauseQueue of a deleting tenant: %v, want ErrRefused", err)
	}
	if n, err := b.svc.DrainQueue(b.ctx, tn.ID, tenancy.ActorAdmin); !errors.Is(err, tenancy.ErrRefused) || n.Total() != 0 {
		t.Fatalf("DrainQueue of a deleting tenant: %+v, %v, want nothing and ErrRefused", n, err)
	}
	if _, err := b.svc.SetLimits(b.ctx, tn.ID, "pro", tenantctx.Limits{}, tenancy.ActorAdmin); !errors.Is(err, tenancy.ErrRefused) {
		t.Fatalf("SetLimits of a deleting tenant: %v, want ErrRefused", err)
	}
	if err := b.svc.ResumeQueue(b.ctx, tn.ID, tenancy.ActorAdmin); !errors.Is(err, tenancy.ErrRefused) {
		t.Fatalf("ResumeQueue of a deleting tenant: %v, want ErrRefused", err)
	}
	for _, e := range b.audit(t, tn.ID) {
		if e.Action == string(tenancy.ActionQueueResumed) {
			t.Fatalf("audit entry %+v: a queue resumed for a tenant being deleted", e)
		}
	}
	info, err := b.inspector.GetTaskInfo(tasks.QueueCritical, d.TaskID)
	if err != nil || info.State != asynq.TaskStatePending {
		t.Fatalf("destroy after the refused operations: %+v, %v; want it pending in asynq", info, err)
	}
	if q := b.queue(t, tn.ID); q.Paused {
		t.Fatalf("deleting tenant paused: %+v", q)
	}
}

// TestPauseOfProvisioningTenantRefused: pausing the queue of a tenant
// still being provisioned is refused (ErrNotReady) and its tenant:migrate
// stays in asynq. A pause moved the migration back into the tenant's
// held backlog, so the tenant stayed provisioning until an operator
// resumed its queue; its resume is still allowed (a drain is refused too:
// TestDrainOfProvisioningTenantRefused).
func TestPauseOfProvisioningTenantRefused(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	p, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: "fresh-acme"}, tenancy.ActorAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.PauseQueue(b.ctx, p.Tenant.ID, tenancy.ActorAdmin); !errors.Is(err, tenancy.ErrNotReady) {
		t.Errorf("PauseQueue of a provisioning tenant: %v, want ErrNotReady", err)
	}
	if _, err := b.inspector.GetTaskInfo(tasks.QueueCritical, p.MigrateTaskID); err != nil {
		t.Errorf("tenant:migrate of the provisioning tenant after the pause: %v, want it in asynq", err)
	}
	if q := b.queue(t, p.Tenant.ID); q.Paused {
		t.Errorf("provisioning tenant paused: %+v", q)
	}
	if err := b.svc.ResumeQueue(b.ctx, p.Tenant.ID, tenancy.ActorAdmin); err != nil {
		t.Fatalf("ResumeQueue of a provisioning tenant: %v", err)
	}
	if _, err := b.svc.Migrate(b.ctx, p.Tenant, 0, tenancy.ActorWorker); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.PauseQueue(b.ctx, p.Tenant.ID, tenancy.ActorAdmin); err != nil {
		t.Fatalf("PauseQueue once active: %v", err)
	}
}

// TestSetLimitsUnknownPlan: a plan without a policy is refused (its
// tenants would silently get the default plan's), and nothing changes.
func TestSetLimitsUnknownPlan(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	tn := b.active(t, "typo-acme")
	if _, err := b.svc.SetLimits(b.ctx, tn.ID, "enterprize", tenantctx.Limits{}, tenancy.ActorAdmin); !errors.Is(err, tenancy.ErrUnknownPlan) {
		t.Fatalf("SetLimits with an unknown plan: %v, want ErrUnknownPlan", err)
	}
	got, err := b.catalog.TenantByID(b.ctx, tn.ID)
	if err != nil || got.Plan != tn.Plan {
		t.Fatalf("plan after the refused change: %q, %v; want %q", got.Plan, err, tn.Plan)
	}
	if _, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: "typo-two", Plan: "enterprize"}, tenancy.ActorAdmin); !errors.Is(err, tenancy.ErrUnknownPlan) {
		t.Fatalf("Provision with an unknown plan: %v, want ErrUnknownPlan", err)
	}
	if _, err := b.catalog.TenantBySlug(b.ctx, "typo-two"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("tenant of the refused provisioning: %v, want ErrNotFound", err)
	}
}

// TestProvisionAbortedWhenMigrationRefused: when the tenant's migration
// cannot be queued (here: the critical queue's backlogs are at
// MaxWaitingTotal), Provision returns the dispatcher's error and keeps
// nothing: no catalog row, no key, an audit entry saying so, and the
// slug can be taken again once there is room.
func TestProvisionAbortedWhenMigrationRefused(t *testing.T) {
	t.Parallel()
	// No worker: the first migration is admitted to asynq, the next waits
	// in the backlogs, and then the queue is full.
	b := setupFairConfig(t, fair.Config{MinPending: 1, MaxWaitingTotal: 1})
	pool, catalog, svc, d, ctx := b.pool, b.catalog, b.svc, b.d, b.ctx
	for _, slug := range []string{"first-in", "second-in"} {
		if _, err := svc.Provision(ctx, tenancy.NewTenant{Slug: slug}, tenancy.ActorAdmin); err != nil {
			t.Fatalf("provision %s: %v", slug, err)
		}
	}
	_, err := svc.Provision(ctx, tenancy.NewTenant{Slug: "third-in"}, tenancy.ActorAdmin)
	if !errors.Is(err, fair.ErrQueueFull) {
		t.Fatalf("provision past the queue's cap: %v, want fair.ErrQueueFull", err)
	}
	if _, err := catalog.TenantBySlug(ctx, "third-in"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("tenant of the aborted provisioning: %v, want ErrNotFound", err)
	}
	var aborted []string
	rows, err := pool.Query(ctx, `SELECT detail::text FROM tenancy.audit_log WHERE action = $1`, string(tenancy.ActionProvisionAborted))
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			t.Fatal(err)
		}
		aborted = append(aborted, d)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(aborted) != 1 || !strings.Contains(aborted[0], "third-in") {
		t.Fatalf("provision_aborted entries %v, want one for third-in", aborted)
	}
	// Room again (the waiting migration discarded): the slug is free.
	if n, err := d.Drain(ctx, mustSlug(t, catalog, "second-in").ID, tasks.QueueCritical); err != nil || n.Total() != 1 {
		t.Fatalf("drain second-in: %+v, %v", n, err)
	}
	if _, err := svc.Provision(ctx, tenancy.NewTenant{Slug: "third-in"}, tenancy.ActorAdmin); err != nil {
		t.Fatalf("provision again after the abort: %v", err)
	}
}

func mustSlug(t *testing.T, c *storage.Postgres, slug string) tenantctx.Tenant {
	t.Helper()
	tn, err := c.TenantBySlug(t.Context(), slug)
	if err != nil {
		t.Fatal(err)
	}
	return tn
}

// TestDrainOfProvisioningTenantRefused: draining the queue of a tenant
// still being provisioned is refused (ErrNotReady) and its tenant:migrate
// stays in asynq. A drain discarded the migration, so the tenant stayed
// provisioning until POST /admin/migrations. Once active it can be
// drained.
func TestDrainOfProvisioningTenantRefused(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	p, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: "drained-acme"}, tenancy.ActorAdmin)
	if err != nil {
		t.Fatal(err)
	}
	n, err := b.svc.DrainQueue(b.ctx, p.Tenant.ID, tenancy.ActorAdmin)
	if !errors.Is(err, tenancy.ErrNotReady) || n.Total() != 0 {
		t.Errorf("DrainQueue of a provisioning tenant: %+v, %v; want nothing and ErrNotReady", n, err)
	}
	if _, err := b.inspector.GetTaskInfo(tasks.QueueCritical, p.MigrateTaskID); err != nil {
		t.Errorf("tenant:migrate of the provisioning tenant after the drain: %v, want it in asynq", err)
	}
	for _, e := range b.audit(t, p.Tenant.ID) {
		if e.Action == string(tenancy.ActionQueueDrained) {
			t.Errorf("audit entry %+v: a refused drain recorded", e)
		}
	}
	if _, err := b.svc.Migrate(b.ctx, p.Tenant, 0, tenancy.ActorWorker); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.DrainQueue(b.ctx, p.Tenant.ID, tenancy.ActorAdmin); err != nil {
		t.Fatalf("DrainQueue once active: %v", err)
	}
}

// TestDrainOfActiveTenantDiscardsItsWaitingMigration: an active tenant's
// waiting tenant:migrate (a schema upgrade of migrate --all) is discarded
// and counted with the rest of its backlog, as docs/fair-dispatch.md says; enqueueing
// the migrations again brings it back.
func TestDrainOfActiveTenantDiscardsItsWaitingMigration(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	tn := b.active(t, "upgraded-acme") // its provisioning tenant:migrate still waits in asynq
	m, err := b.svc.EnqueueMigration(b.ctx, tn)
	if err != nil {
		t.Fatal(err)
	}
	n, err := b.svc.DrainQueue(b.ctx, tn.ID, tenancy.ActorAdmin)
	if err != nil || n.Total() != 1 {
		t.Fatalf("DrainQueue of an active tenant with a waiting migration: %+v, %v; want it discarded", n, err)
	}
	if _, err := b.inspector.GetTaskInfo(tasks.QueueCritical, m.TaskID); !errors.Is(err, asynq.ErrTaskNotFound) {
		t.Fatalf("tenant:migrate after the drain: %v, want it discarded", err)
	}
	if again, err := b.svc.EnqueueMigration(b.ctx, tn); err != nil || again.Existing {
		t.Fatalf("migration enqueued again: %+v, %v; want a new one", again, err)
	}
}
