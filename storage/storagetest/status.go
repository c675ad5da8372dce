package storagetest

import (
	"errors"
	"strings"
	"testing"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

func testStatusTransitions(t *testing.T, c storage.Catalog) {
	ctx := testContext(t)
	for _, from := range tenantctx.Statuses {
		for _, to := range tenantctx.Statuses {
			tn := mustCreate(t, ctx, c, from)
			got, err := c.SetStatus(ctx, tn.ID, to)
			allowed := from.CanTransition(to)
			switch {
			case allowed && err != nil:
				t.Errorf("SetStatus %s -> %s: %v, want allowed", from, to, err)
				continue
			case allowed:
				if got.Status != to || got.ID != tn.ID || got.Slug != tn.Slug {
					t.Errorf("SetStatus %s -> %s returned %+v", from, to, got)
				}
				if got.UpdatedAt.Before(tn.UpdatedAt) {
					t.Errorf("SetStatus %s -> %s: updated_at went back from %v to %v", from, to, tn.UpdatedAt, got.UpdatedAt)
				}
			case !errors.Is(err, storage.ErrInvalidTransition):
				t.Errorf("SetStatus %s -> %s error = %v, want ErrInvalidTransition", from, to, err)
				continue
			case !strings.Contains(err.Error(), string(from)) || !strings.Contains(err.Error(), string(to)):
				t.Errorf("SetStatus %s -> %s error %q does not name both statuses", from, to, err)
			}
			want := from
			if allowed {
				want = to
			}
			stored, err := c.TenantByID(ctx, tn.ID)
			if err != nil {
				t.Fatalf("Tenant(%s): %v", tn.ID, err)
			}
			if stored.Status != want {
				t.Errorf("after SetStatus %s -> %s the stored status is %s, want %s", from, to, stored.Status, want)
			}
		}
	}
}

func testSetStatusUnknownOrInvalid(t *testing.T, c storage.Catalog) {
	ctx := testContext(t)
	if _, err := c.SetStatus(ctx, tenantctx.NewID(), tenantctx.StatusActive); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("SetStatus(unknown id) error = %v, want ErrNotFound", err)
	}
	tn := mustCreate(t, ctx, c, tenantctx.StatusActive)
	for _, bad := range []tenantctx.Status{"", "deleted", "ACTIVE", "active'; --"} {
		if _, err := c.SetStatus(ctx, tn.ID, bad); err == nil {
			t.Errorf("SetStatus(%q) = nil error, want rejection", bad)
		}
	}
	stored, err := c.TenantByID(ctx, tn.ID)
	if err != nil {
		t.Fatalf("Tenant(%s): %v", tn.ID, err)
	}
	if stored.Status != tenantctx.StatusActive {
		t.Errorf("after invalid SetStatus calls the status is %q, want active", stored.Status)
	}
}

// testSetStatusFrom: SetStatusFrom changes the status only from the
// expected one; otherwise it returns the tenant as it is and
// ErrStatusChanged, and changes nothing.
func testSetStatusFrom(t *testing.T, c storage.Catalog) {
	ctx := testContext(t)
	tn := mustCreate(t, ctx, c, tenantctx.StatusProvisioning)
	got, err := c.SetStatusFrom(ctx, tn.ID, tenantctx.StatusProvisioning, tenantctx.StatusActive)
	if err != nil || got.Status != tenantctx.StatusActive {
		t.Fatalf("SetStatusFrom(provisioning -> active) = %s, %v", got.Status, err)
	}
	if _, err := c.SetStatus(ctx, tn.ID, tenantctx.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	// A late activation finds the tenant suspended and leaves it so.
	got, err = c.SetStatusFrom(ctx, tn.ID, tenantctx.StatusProvisioning, tenantctx.StatusActive)
	if !errors.Is(err, storage.ErrStatusChanged) || got.Status != tenantctx.StatusSuspended || got.ID != tn.ID {
		t.Errorf("SetStatusFrom(provisioning -> active) of a suspended tenant = %+v, %v; want it as it is and ErrStatusChanged", got, err)
	}
	if stored, err := c.TenantByID(ctx, tn.ID); err != nil || stored.Status != tenantctx.StatusSuspended {
		t.Errorf("after a refused SetStatusFrom: %s, %v; want suspended", stored.Status, err)
	}
	// The lifecycle still applies from the expected status.
	if _, err := c.SetStatusFrom(ctx, tn.ID, tenantctx.StatusSuspended, tenantctx.StatusProvisioning); !errors.Is(err, storage.ErrInvalidTransition) {
		t.Errorf("SetStatusFrom(suspended -> provisioning) = %v, want ErrInvalidTransition", err)
	}
	if _, err := c.SetStatusFrom(ctx, tenantctx.NewID(), tenantctx.StatusActive, tenantctx.StatusSuspended); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("SetStatusFrom(unknown id) = %v, want ErrNotFound", err)
	}
	if _, err := c.SetStatusFrom(ctx, tn.ID, "bogus", tenantctx.StatusActive); err == nil {
		t.Error("SetStatusFrom(from an invalid status) = nil error")
	}
}
