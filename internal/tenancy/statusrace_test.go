package tenancy_test

import (
	"context"
	"sync"
	"testing"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// racingStatus is a catalog that runs a hook once, right after a status
// change is saved: another operator's whole request, landing between a
// status change and the hold that follows it.
type racingStatus struct {
	storage.Catalog
	mu    sync.Mutex
	after func(to tenantctx.Status)
}

func (r *racingStatus) SetStatus(ctx context.Context, id string, to tenantctx.Status) (tenantctx.Tenant, error) {
	t, err := r.Catalog.SetStatus(ctx, id, to)
	r.mu.Lock()
	hook := r.after
	r.after = nil
	r.mu.Unlock()
	if hook != nil {
		hook(to)
	}
	return t, err
}

func (r *racingStatus) SetStatusFrom(ctx context.Context, id string, from, to tenantctx.Status) (tenantctx.Tenant, error) {
	t, err := r.Catalog.SetStatusFrom(ctx, id, from, to)
	r.mu.Lock()
	hook := r.after
	r.after = nil
	r.mu.Unlock()
	if hook != nil {
		hook(to)
	}
	return t, err
}

// TestSuspensionHoldFollowsRacingStatusChanges: a Suspend whose hold lands
// after a Resume (or a deletion request) that came in between leaves no
// hold on an active (or deleted) tenant's work, and a Resume whose release
// lands after a Suspend leaves the suspended tenant's work held.
func TestSuspensionHoldFollowsRacingStatusChanges(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// start is the tenant's status before the racing calls.
		start tenantctx.Status
		// first is interrupted after its status change by second.
		first, second func(*tenancy.Service, context.Context, string) error
		wantStatus    tenantctx.Status
		wantHeld      bool
	}{
		{"suspend, resume in between", tenantctx.StatusActive, suspend, resume, tenantctx.StatusActive, false},
		{"resume, suspend in between", tenantctx.StatusSuspended, resume, suspend, tenantctx.StatusSuspended, true},
		{"suspend, deletion in between", tenantctx.StatusActive, suspend, deletion, tenantctx.StatusDeleting, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool, catalog, docs := catalogOn(t)
			d, enq, _ := fairOn(t, catalog)
			rc := &racingStatus{Catalog: catalog}
			svc := tenancy.New(tenancy.Config{Catalog: rc, Enqueuer: enq, Documents: docs, SchemaPool: pool,
				Dispatcher: d, Plans: fair.DefaultPlans()})
			b := &fairBundle{bundle: &bundle{ctx: t.Context(), catalog: catalog, docs: docs, pool: pool, svc: svc}, d: d, enq: enq}
			tn := b.active(t, "racing")
			b.pdfs(t, tn, 3)
			if tc.start == tenantctx.StatusSuspended {
				if err := suspend(svc, b.ctx, tn.ID); err != nil {
					t.Fatal(err)
				}
			}

			var secondErr error
			rc.after = func(tenantctx.Status) { secondErr = tc.second(svc, b.ctx, tn.ID) }
			if err := tc.first(svc, b.ctx, tn.ID); err != nil {
				t.Fatalf("first call: %v", err)
			}
			if secondErr != nil {
				t.Fatalf("call in between: %v", secondErr)
			}
			got, err := catalog.TenantByID(b.ctx, tn.ID)
			if err != nil || got.Status != tc.wantStatus {
				t.Fatalf("status after the race = %s, %v; want %s", got.Status, err, tc.wantStatus)
			}
			if q := b.queue(t, tn.ID); q.Suspended != tc.wantHeld {
				t.Errorf("%s tenant: suspension hold = %v, want %v (%+v)", got.Status, q.Suspended, tc.wantHeld, q)
			}
		})
	}
}

func suspend(svc *tenancy.Service, ctx context.Context, id string) error {
	_, err := svc.Suspend(ctx, id, tenancy.ActorAdmin)
	return err
}

func resume(svc *tenancy.Service, ctx context.Context, id string) error {
	_, err := svc.Resume(ctx, id, tenancy.ActorAdmin)
	return err
}

func deletion(svc *tenancy.Service, ctx context.Context, id string) error {
	_, err := svc.RequestDeletion(ctx, id, tenancy.ActorAdmin)
	return err
}
