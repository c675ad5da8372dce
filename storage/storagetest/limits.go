package storagetest

import (
	"errors"
	"testing"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

func testSetLimits(t *testing.T, c storage.Catalog) {
	ctx := testContext(t)
	tn := mustCreate(t, ctx, c, tenantctx.StatusActive)
	if tn.Limits != (tenantctx.Limits{}) {
		t.Fatalf("new tenant has limits %+v, want none (the plan's)", tn.Limits)
	}
	want := tenantctx.Limits{Weight: 4, MaxRunning: 7, MaxWaiting: 20000}
	got, err := c.SetLimits(ctx, tn.ID, "enterprise", want)
	if err != nil {
		t.Fatalf("SetLimits: %v", err)
	}
	if got.Limits != want || got.Plan != "enterprise" || got.Status != tn.Status {
		t.Fatalf("SetLimits returned %+v", got)
	}
	// An empty plan keeps the plan; the limits are replaced as a whole.
	got, err = c.SetLimits(ctx, tn.ID, "", tenantctx.Limits{MaxWaiting: 5})
	if err != nil || got.Plan != "enterprise" || got.Limits != (tenantctx.Limits{MaxWaiting: 5}) {
		t.Fatalf("SetLimits with no plan = %+v, %v", got, err)
	}
	stored, err := c.TenantByID(ctx, tn.ID)
	if err != nil || stored.Limits != got.Limits || stored.Plan != "enterprise" {
		t.Fatalf("stored after SetLimits = %+v, %v", stored, err)
	}
	for _, bad := range []tenantctx.Limits{{Weight: -1}, {MaxRunning: tenantctx.MaxLimit + 1}, {MaxWaiting: -5}} {
		if _, err := c.SetLimits(ctx, tn.ID, "", bad); !errors.Is(err, tenantctx.ErrInvalidLimits) {
			t.Errorf("SetLimits(%+v) error = %v, want ErrInvalidLimits", bad, err)
		}
	}
	if _, err := c.SetLimits(ctx, tenantctx.NewID(), "", want); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("SetLimits(unknown id) error = %v, want ErrNotFound", err)
	}
	// A tenant being deleted gets no new limits.
	doomed := mustCreate(t, ctx, c, tenantctx.StatusDeleting)
	if _, err := c.SetLimits(ctx, doomed.ID, "enterprise", want); !errors.Is(err, storage.ErrTenantDeleting) {
		t.Errorf("SetLimits(deleting tenant) error = %v, want ErrTenantDeleting", err)
	}
	if stored, err := c.TenantByID(ctx, doomed.ID); err != nil || stored.Limits != doomed.Limits || stored.Plan != doomed.Plan {
		t.Errorf("deleting tenant after a refused SetLimits = %+v, %v; want it unchanged", stored, err)
	}
}
