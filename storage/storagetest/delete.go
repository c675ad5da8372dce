package storagetest

import (
	"errors"
	"testing"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

func testDelete(t *testing.T, c storage.Catalog) {
	ctx := testContext(t)
	// The doomed tenant's key was issued before its deletion was
	// requested: a tenant being deleted gets no new one.
	doomed := mustCreate(t, ctx, c, tenantctx.StatusActive)
	kept := mustCreate(t, ctx, c, tenantctx.StatusActive)
	doomedKey, err := c.CreateAPIKey(ctx, doomed.ID)
	if err != nil {
		t.Fatalf("CreateAPIKey(%s): %v", doomed.ID, err)
	}
	if doomed, err = c.SetStatus(ctx, doomed.ID, tenantctx.StatusDeleting); err != nil {
		t.Fatalf("SetStatus(%s, deleting): %v", doomed.ID, err)
	}
	keptKey, err := c.CreateAPIKey(ctx, kept.ID)
	if err != nil {
		t.Fatalf("CreateAPIKey(%s): %v", kept.ID, err)
	}

	if err := c.DeleteTenant(ctx, doomed.ID); err != nil {
		t.Fatalf("DeleteTenant(%s): %v", doomed.ID, err)
	}
	if _, err := c.TenantByID(ctx, doomed.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Tenant(deleted) error = %v, want ErrNotFound", err)
	}
	if _, err := c.TenantBySlug(ctx, doomed.Slug); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("TenantBySlug(deleted) error = %v, want ErrNotFound", err)
	}
	if _, err := c.TenantForAPIKey(ctx, doomedKey); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("TenantForAPIKey(key of deleted tenant) error = %v, want ErrNotFound", err)
	}
	if err := c.DeleteTenant(ctx, doomed.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("DeleteTenant(already deleted) error = %v, want ErrNotFound", err)
	}
	if err := c.DeleteTenant(ctx, "../"+kept.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("DeleteTenant(malformed id) error = %v, want ErrNotFound", err)
	}
	page, err := c.ListTenants(ctx, storage.ListOptions{})
	if err != nil {
		t.Fatalf("ListTenants: %v", err)
	}
	if len(page) != 1 || page[0].ID != kept.ID {
		t.Errorf("after deleting %s the catalog lists %+v, want only %s", doomed.ID, page, kept.ID)
	}

	// The other tenant is untouched.
	if got, err := c.TenantByID(ctx, kept.ID); err != nil {
		t.Errorf("Tenant(kept): %v", err)
	} else {
		assertSameTenant(t, got, kept)
	}
	if id, err := c.TenantForAPIKey(ctx, keptKey); err != nil || id != kept.ID {
		t.Errorf("TenantForAPIKey(key of kept tenant) = %q, %v; want %s", id, err, kept.ID)
	}

	// The slug is free again.
	again := newTenant(t, tenantctx.StatusProvisioning)
	again.Slug, again.Schema = doomed.Slug, doomed.Schema
	if _, err := c.CreateTenant(ctx, again); err != nil {
		t.Errorf("CreateTenant reusing the deleted slug %s: %v", doomed.Slug, err)
	}
	if _, err := c.TenantForAPIKey(ctx, doomedKey); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("old key after the slug was reused: error = %v, want ErrNotFound", err)
	}
}
