package tenancy_test

import (
	"errors"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestEnqueueInFlightKeepsNoOlderLimits: an enqueue on another service
// read the tenant (its cache's entry, as it was) just before an operator's
// limits change was saved and told to the dispatcher; its script runs
// after that. It must not put the policy it read back in the tenant's
// queue: the new limits stay in force, not the old ones until the
// tenant's next enqueue.
func TestEnqueueInFlightKeepsNoOlderLimits(t *testing.T) {
	t.Parallel()
	b, rdb := staleLimitsBundle(t)
	tn := b.active(t, "limits-inflight")
	b.pdfs(t, tn, 3)

	// The other service's enqueuer, on the same Redis, admitting through
	// a catalog whose read of the tenant lets the limits change land
	// before the enqueue goes on.
	other, rc := racingEnqueuer(b, rdb)
	limits := tenantctx.Limits{Weight: 3, MaxRunning: 2, MaxWaiting: 7}
	rc.after = func() {
		if _, err := b.svc.SetLimits(b.ctx, tn.ID, "", limits, tenancy.ActorAdmin); err != nil {
			t.Error(err)
		}
	}
	if _, err := other.Enqueue(b.ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 100}); err != nil {
		t.Fatal(err)
	}
	want := fair.Policy{Weight: 3, MaxRunning: 2, MaxWaiting: 7}
	if d := inDefault(t, b.queue(t, tn.ID)); d.Policy != want || d.Waiting != 3 {
		t.Fatalf("default queue after a limits change and an enqueue that read the tenant before it: %+v, want policy %+v and 3 waiting", d, want)
	}
}

// TestEnqueueInFlightChecksTheLoweredWaitingCap: an enqueue on another
// service read the tenant (max_waiting 10) just before an operator lowered
// its max_waiting to 3, with 3 tasks already waiting. The queue keeps the
// lowered policy, and the enqueue's own admission must be checked against
// it too: refused (a *fair.FullError naming the cap in force), not a
// fourth task waiting past a cap the operator had just lowered.
func TestEnqueueInFlightChecksTheLoweredWaitingCap(t *testing.T) {
	t.Parallel()
	b, rdb := staleLimitsBundle(t)
	tn := b.active(t, "cap-inflight")
	if _, err := b.svc.SetLimits(b.ctx, tn.ID, "", tenantctx.Limits{MaxWaiting: 10}, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	b.pdfs(t, tn, 4) // one admitted, three waiting
	if d := inDefault(t, b.queue(t, tn.ID)); d.Waiting != 3 {
		t.Fatalf("default queue before: %+v, want 3 waiting", d)
	}

	// The other service's enqueuer, on the same Redis, admitting through
	// a catalog whose read of the tenant lets the limits change land
	// before the enqueue goes on.
	other, rc := racingEnqueuer(b, rdb)
	rc.after = func() {
		if _, err := b.svc.SetLimits(b.ctx, tn.ID, "", tenantctx.Limits{MaxWaiting: 3}, tenancy.ActorAdmin); err != nil {
			t.Error(err)
		}
	}
	_, err := other.Enqueue(b.ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 100})
	var full *fair.FullError
	if !errors.As(err, &full) || full.QueueWide || full.Cap != 3 || full.Waiting != 3 {
		t.Errorf("enqueue that read max_waiting 10 before it was lowered to 3, with 3 waiting: %v (%+v), want the tenant's backlog full at cap 3", err, full)
	}
	want := fair.Policy{Weight: 1, MaxRunning: 10, MaxWaiting: 3}
	if d := inDefault(t, b.queue(t, tn.ID)); d.Policy != want || d.Waiting != 3 {
		t.Fatalf("default queue after: %+v, want policy %+v and 3 waiting", d, want)
	}
}

// TestEnqueueInFlightBringsNoOlderLimitsToANewQueue: as
// TestEnqueueInFlightKeepsNoOlderLimits, but the enqueue is the tenant's
// first in the default queue, where the limits change found no state of
// it to apply its policy to. The state the enqueue creates there must
// still carry the new limits, not those it read before the change.
func TestEnqueueInFlightBringsNoOlderLimitsToANewQueue(t *testing.T) {
	t.Parallel()
	b, rdb := staleLimitsBundle(t)
	tn := b.active(t, "limits-newqueue")

	other, rc := racingEnqueuer(b, rdb)
	rc.after = func() {
		if _, err := b.svc.SetLimits(b.ctx, tn.ID, "", tenantctx.Limits{Weight: 3, MaxRunning: 2, MaxWaiting: 7}, tenancy.ActorAdmin); err != nil {
			t.Error(err)
		}
	}
	if _, err := other.Enqueue(b.ctx, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 100}); err != nil {
		t.Fatal(err)
	}
	want := fair.Policy{Weight: 3, MaxRunning: 2, MaxWaiting: 7}
	if d := inDefault(t, b.queue(t, tn.ID)); d.Policy != want {
		t.Fatalf("default queue after a limits change and the tenant's first enqueue there, which read the tenant before it: %+v, want policy %+v", d, want)
	}
}

// staleLimitsBundle returns a fair bundle whose service and enqueuer
// share a Redis of their own (rdb), for the tests of an enqueue on
// another service racing a limits change.
func staleLimitsBundle(t *testing.T) (b *fairBundle, rdb *redis.Client) {
	t.Helper()
	pool, catalog, docs := catalogOn(t)
	rdb = redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	inspector := asynq.NewInspectorFromRedisClient(rdb)
	d := fair.New(rdb, fair.Config{MinPending: 1})
	enq := tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), inspector, nil,
		tasks.WithAdmission(tasks.Admission{Dispatcher: d, Tenants: catalog}))
	svc := tenancy.New(tenancy.Config{Catalog: catalog, Enqueuer: enq, Documents: docs, SchemaPool: pool,
		Dispatcher: d, Plans: fair.DefaultPlans()})
	return &fairBundle{bundle: &bundle{ctx: t.Context(), catalog: catalog, docs: docs, inspector: inspector, pool: pool, svc: svc}, d: d, enq: enq}, rdb
}

// racingEnqueuer returns another service's enqueuer on rdb, admitting
// through a catalog (rc) whose next read of a tenant runs rc.after before
// the enqueue goes on: a change made there lands between the enqueue's
// read of the tenant and its script.
func racingEnqueuer(b *fairBundle, rdb *redis.Client) (*tasks.Enqueuer, *racingRead) {
	rc := &racingRead{Catalog: b.catalog}
	return tasks.NewEnqueuer(asynq.NewClientFromRedisClient(rdb), b.inspector, nil,
		tasks.WithAdmission(tasks.Admission{Dispatcher: fair.New(rdb, fair.Config{MinPending: 1}), Tenants: rc, Plans: fair.DefaultPlans()})), rc
}
