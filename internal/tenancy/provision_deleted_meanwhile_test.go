package tenancy_test

import (
	"context"
	"errors"
	"testing"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tenantctx"
)

// destroyedAtConflict is a catalog whose CreateTenant, refused for a slug
// taken, lets the tenant holding it go before it answers, as that
// tenant's tenant:destroy deleting its row right after the INSERT's
// conflict.
type destroyedAtConflict struct {
	storage.Catalog
	holder string
}

func (c destroyedAtConflict) CreateTenant(ctx context.Context, t tenantctx.Tenant) (tenantctx.Tenant, error) {
	created, err := c.Catalog.CreateTenant(ctx, t)
	if errors.Is(err, storage.ErrConflict) {
		if derr := c.Catalog.DeleteTenant(ctx, c.holder); derr != nil {
			return created, derr
		}
	}
	return created, err
}

// TestProvisionOfASlugWhoseDeletionEndsMeanwhileSaysItWasBeingDeleted:
// a provisioning refused because the slug belongs to a tenant being
// deleted, whose destroy deletes its catalog row before the refusal is
// explained, answers that the tenant is being deleted (ErrBeingDeleted:
// provision again), as it does before the row goes; it said the slug was
// taken (looking the slug up again, it found no tenant and kept the bare
// conflict), which no retry changes in an operator's reading, and failed
// TestProvisionWhileTheSlugIsBeingDeleted in a CI run.
func TestProvisionOfASlugWhoseDeletionEndsMeanwhileSaysItWasBeingDeleted(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := memstore.New()
	tn, err := tenantctx.New("acme", "Acme", tenancy.DefaultPlan)
	if err != nil {
		t.Fatal(err)
	}
	tn.Status = tenantctx.StatusActive
	if tn, err = c.CreateTenant(ctx, tn); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetStatus(ctx, tn.ID, tenantctx.StatusDeleting); err != nil {
		t.Fatal(err)
	}
	s := memService(destroyedAtConflict{Catalog: c, holder: tn.ID})
	_, err = s.Provision(ctx, tenancy.NewTenant{Slug: "acme"}, "test")
	if !errors.Is(err, tenancy.ErrBeingDeleted) {
		t.Fatalf("Provision = %v; want ErrBeingDeleted (the slug's tenant was being deleted, and is gone now: provision again)", err)
	}
}
