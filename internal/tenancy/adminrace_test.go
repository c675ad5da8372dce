package tenancy_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// twoServices returns a second Service on b's catalog, Redis and queues:
// another enqueue service's, for operator calls that race b.svc's.
func (b *fairBundle) twoServices(catalog storage.Catalog) *tenancy.Service {
	return tenancy.New(tenancy.Config{Catalog: catalog, Enqueuer: b.enq, Documents: b.docs, SchemaPool: b.pool,
		Dispatcher: b.d, Plans: fair.DefaultPlans()})
}

// TestRacingPauseAndResumeLeaveOneState: an operator's pause and another
// operator's resume of the same tenant's queue, at the same time through
// two services, leave the tenant either paused or resumed in every queue,
// never paused in some queues and running in others while its queue
// answers "paused".
func TestRacingPauseAndResumeLeaveOneState(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	other := b.twoServices(b.catalog)
	tn := b.active(t, "pauserace")
	b.pdfs(t, tn, 3)
	for i := range 200 {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := b.svc.PauseQueue(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			if err := other.ResumeQueue(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
				t.Error(err)
			}
		}()
		wg.Wait()
		q := b.queue(t, tn.ID)
		var paused, running []string
		for _, s := range q.Queues {
			if s.Paused {
				paused = append(paused, s.Queue)
			} else {
				running = append(running, s.Queue)
			}
		}
		if len(paused) > 0 && len(running) > 0 {
			t.Fatalf("round %d: after a racing pause and resume, paused in %v but running in %v (queue answers paused=%v)",
				i, paused, running, q.Paused)
		}
		if err := b.svc.ResumeQueue(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
			t.Fatal(err)
		}
	}
}

// racingLimits is a catalog that runs a hook once, right after a limits
// change is saved: another operator's whole limits change, landing
// between a change saved in the catalog and the dispatcher being told.
type racingLimits struct {
	storage.Catalog
	mu    sync.Mutex
	after func()
}

func (r *racingLimits) SetLimits(ctx context.Context, id, plan string, l tenantctx.Limits) (tenantctx.Tenant, error) {
	t, err := r.Catalog.SetLimits(ctx, id, plan, l)
	r.mu.Lock()
	hook := r.after
	r.after = nil
	r.mu.Unlock()
	if hook != nil {
		hook()
	}
	return t, err
}

// TestRacingLimitsChangesLeaveTheCatalogsPolicy: of two limits (or plan)
// changes of one tenant, the one the catalog keeps is the one its backlog
// is dispatched with: the dispatcher is not left with the policy of the
// change the catalog overwrote.
func TestRacingLimitsChangesLeaveTheCatalogsPolicy(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	rc := &racingLimits{Catalog: b.catalog}
	first := b.twoServices(rc)
	tn := b.active(t, "limitsrace")
	b.pdfs(t, tn, 3)

	rc.after = func() {
		if _, err := b.svc.SetLimits(b.ctx, tn.ID, "pro", tenantctx.Limits{MaxRunning: 5}, tenancy.ActorAdmin); err != nil {
			t.Error(err)
		}
	}
	if _, err := first.SetLimits(b.ctx, tn.ID, "", tenantctx.Limits{Weight: 2, MaxRunning: 1, MaxWaiting: 9}, tenancy.ActorAdmin); err != nil {
		t.Fatal(err)
	}
	checkPolicyFollowsCatalog(t, b, tn.ID)

	// The same, unforced, from two services at once.
	for i := range 100 {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := b.svc.SetLimits(b.ctx, tn.ID, "pro", tenantctx.Limits{MaxRunning: 5}, tenancy.ActorAdmin); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := first.SetLimits(b.ctx, tn.ID, "free", tenantctx.Limits{Weight: 2, MaxRunning: 1, MaxWaiting: 9}, tenancy.ActorAdmin); err != nil {
				t.Error(err)
			}
		}()
		wg.Wait()
		if !checkPolicyFollowsCatalog(t, b, tn.ID) {
			t.Fatalf("round %d", i)
		}
	}
}

// checkPolicyFollowsCatalog reports whether every queue that records a
// policy of tenant id records the one its catalog row gives it.
func checkPolicyFollowsCatalog(t *testing.T, b *fairBundle, id string) bool {
	t.Helper()
	cur, err := b.catalog.TenantByID(b.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	want := fair.DefaultPlans().PolicyOf(cur)
	stats, err := b.d.Stats(b.ctx, id, b.enq.Layout().Queues()...)
	if err != nil {
		t.Fatal(err)
	}
	ok := true
	for _, s := range stats {
		if s.Policy.Weight != 0 && s.Policy != want {
			t.Errorf("queue %s dispatches with %+v; the catalog (plan %s, limits %+v) gives %+v", s.Queue, s.Policy, cur.Plan, cur.Limits, want)
			ok = false
		}
	}
	return ok
}

// TestLimitsChangedWhileDeletionIsRequested: a deletion requested between
// SetLimits's status check and its write gets the refusal the check would
// have given (the HTTP API's 409), not a limits change of a tenant being
// deleted answered 200 and audited after its deletion request.
func TestLimitsChangedWhileDeletionIsRequested(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	rc := &racyCatalog{Catalog: b.catalog}
	svc := b.twoServices(rc)
	tn := b.active(t, "limitsdel")
	b.pdfs(t, tn, 2)
	rc.hook = func() {
		if _, err := b.svc.RequestDeletion(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
			t.Error(err)
		}
	}
	got, err := svc.SetLimits(b.ctx, tn.ID, "pro", tenantctx.Limits{MaxRunning: 3}, tenancy.ActorAdmin)
	if !errors.Is(err, tenancy.ErrRefused) {
		t.Errorf("SetLimits racing a deletion request = %+v, %v; want ErrRefused", got, err)
	}
	for _, e := range b.audit(t, tn.ID) {
		if e.Action == string(tenancy.ActionLimitsChanged) {
			t.Errorf("a limits change of a tenant being deleted was recorded: %+v", e)
		}
	}
}
