package storagetest

import (
	"errors"
	"testing"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// testWithdrawTenant: WithdrawTenant deletes a tenant that was created,
// like DeleteTenant, and, whether or not there was one, no tenant with its
// id can be created after it (a CreateTenant whose answer was lost and
// that reaches the catalog late); the slug stays free for another id. An
// id once used, also by a deleted tenant, is never created again.
func testWithdrawTenant(t *testing.T, c storage.Catalog) {
	ctx := testContext(t)

	created := mustCreate(t, ctx, c, tenantctx.StatusProvisioning)
	key, err := c.CreateAPIKey(ctx, created.ID)
	if err != nil {
		t.Fatalf("CreateAPIKey(%s): %v", created.ID, err)
	}
	if err := c.WithdrawTenant(ctx, created.ID); err != nil {
		t.Fatalf("WithdrawTenant(created %s): %v", created.ID, err)
	}
	if _, err := c.TenantByID(ctx, created.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("TenantByID(withdrawn) error = %v, want ErrNotFound", err)
	}
	if _, err := c.TenantForAPIKey(ctx, key); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("TenantForAPIKey(key of withdrawn tenant) error = %v, want ErrNotFound", err)
	}
	if err := c.WithdrawTenant(ctx, created.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("WithdrawTenant(withdrawn already) error = %v, want ErrNotFound", err)
	}

	// Withdrawn before its creation reached the catalog: that creation
	// fails, and the slug is free for another id.
	late := newTenant(t, tenantctx.StatusProvisioning)
	if err := c.WithdrawTenant(ctx, late.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("WithdrawTenant(never created) error = %v, want ErrNotFound", err)
	}
	if got, err := c.CreateTenant(ctx, late); !errors.Is(err, storage.ErrConflict) {
		t.Errorf("CreateTenant of a withdrawn id = %+v, %v; want ErrConflict", got, err)
	}
	if _, err := c.TenantBySlug(ctx, late.Slug); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("TenantBySlug(%s) after its late creation failed: error = %v, want ErrNotFound", late.Slug, err)
	}
	other := newTenant(t, tenantctx.StatusProvisioning)
	other.Slug, other.Schema = late.Slug, late.Schema
	if _, err := c.CreateTenant(ctx, other); err != nil {
		t.Errorf("CreateTenant of the withdrawn tenant's slug %s with a new id: %v", late.Slug, err)
	}

	// An id used by a tenant since deleted is not created again.
	deleted := mustCreate(t, ctx, c, tenantctx.StatusActive)
	if err := c.DeleteTenant(ctx, deleted.ID); err != nil {
		t.Fatalf("DeleteTenant(%s): %v", deleted.ID, err)
	}
	again := newTenant(t, tenantctx.StatusProvisioning)
	again.ID = deleted.ID
	if _, err := c.CreateTenant(ctx, again); !errors.Is(err, storage.ErrConflict) {
		t.Errorf("CreateTenant with the id of a deleted tenant: error = %v, want ErrConflict", err)
	}

	if err := c.WithdrawTenant(ctx, "../"+created.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("WithdrawTenant(malformed id) error = %v, want ErrNotFound", err)
	}
}
