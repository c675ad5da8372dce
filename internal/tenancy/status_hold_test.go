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

// barrierReads is a catalog whose TenantByID, while armed, returns only
// once n callers have read: two operators' requests that both read the
// tenant before either changes it.
type barrierReads struct {
	storage.Catalog
	mu      sync.Mutex
	armed   bool
	n       int
	arrived int
	release chan struct{}
}

func (c *barrierReads) TenantByID(ctx context.Context, id string) (tenantctx.Tenant, error) {
	t, err := c.Catalog.TenantByID(ctx, id)
	c.mu.Lock()
	if !c.armed {
		c.mu.Unlock()
		return t, err
	}
	c.arrived++
	if c.arrived == c.n {
		c.armed = false
		close(c.release)
	}
	ch := c.release
	c.mu.Unlock()
	<-ch
	return t, err
}

// TestConcurrentSuspendsAuditOnce: two operators suspend the same
// active tenant at once. The status changes once (active -> suspended), so
// the audit log must hold one tenant.status_changed entry for it.
func TestConcurrentSuspendsAuditOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.active(t, "twosuspends")
	rc := &barrierReads{Catalog: b.catalog, armed: true, n: 2, release: make(chan struct{})}
	svc := tenancy.New(tenancy.Config{Catalog: rc, Enqueuer: b.enqueuer, Documents: b.docs, SchemaPool: b.pool})

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() { _, errs[i] = svc.Suspend(b.ctx, tn.ID, tenancy.ActorAdmin) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for _, e := range b.audit(t, tn.ID) {
		if e.Action == string(tenancy.ActionStatusChanged) && string(e.Detail) == `{"to": "suspended", "from": "active"}` {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("one change active -> suspended, %d tenant.status_changed entries for it; want 1", n)
	}
}

// TestSuspendNotPropagatedStillHoldsTheBacklog: a suspension saved
// whose cache invalidation could not be published (503 to the operator)
// is in force: the tenant is suspended, and other processes may serve
// the old status from their caches for a while. Its backlog must be held
// anyway, as Resume releases it in the same case; otherwise the suspended
// tenant's queued work goes on being admitted and run.
func TestSuspendNotPropagatedStillHoldsTheBacklog(t *testing.T) {
	t.Parallel()
	b := setupFair(t)
	tn := b.active(t, "leaky")
	b.pdfs(t, tn, 3)
	svc := tenancy.New(tenancy.Config{Catalog: unpropagated{b.catalog}, Enqueuer: b.enq, Documents: b.docs, SchemaPool: b.pool,
		Dispatcher: b.d, Plans: fair.DefaultPlans()})
	got, err := svc.Suspend(b.ctx, tn.ID, tenancy.ActorAdmin)
	if !errors.Is(err, storage.ErrInvalidationFailed) || got.Status != tenantctx.StatusSuspended {
		t.Fatalf("Suspend, not propagated = %s, %v", got.Status, err)
	}
	if q := inDefault(t, b.queue(t, tn.ID)); !q.Suspended || q.Admitted != 0 {
		t.Fatalf("suspended tenant (saved, not propagated): backlog held = %v, admitted = %d; want held, none admitted (%+v)", q.Suspended, q.Admitted, q)
	}
}
