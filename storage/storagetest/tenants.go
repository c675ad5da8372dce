package storagetest

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

func testCreateAndGet(t *testing.T, c storage.Catalog) {
	ctx := testContext(t)
	want := newTenant(t, tenantctx.StatusProvisioning)
	before := time.Now().Add(-time.Minute) // slack for a database clock
	created, err := c.CreateTenant(ctx, want)
	if err != nil {
		t.Fatalf("CreateTenant: %v", err)
	}
	if created.CreatedAt.Before(before) || created.UpdatedAt.Before(created.CreatedAt) {
		t.Errorf("CreateTenant timestamps = (%v, %v), want set, created <= updated", created.CreatedAt, created.UpdatedAt)
	}
	want.CreatedAt, want.UpdatedAt = created.CreatedAt, created.UpdatedAt
	assertSameTenant(t, created, want)

	byID, err := c.TenantByID(ctx, want.ID)
	if err != nil {
		t.Fatalf("Tenant(%s): %v", want.ID, err)
	}
	assertSameTenant(t, byID, want)

	bySlug, err := c.TenantBySlug(ctx, want.Slug)
	if err != nil {
		t.Fatalf("TenantBySlug(%s): %v", want.Slug, err)
	}
	assertSameTenant(t, bySlug, want)

	if _, err := c.TenantByID(ctx, tenantctx.NewID()); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Tenant(unknown id) error = %v, want ErrNotFound", err)
	}
	if _, err := c.TenantBySlug(ctx, "unknown-"+want.Slug); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("TenantBySlug(unknown slug) error = %v, want ErrNotFound", err)
	}
}

func testConflict(t *testing.T, c storage.Catalog) {
	ctx := testContext(t)
	first := mustCreate(t, ctx, c, tenantctx.StatusActive)

	sameID := newTenant(t, tenantctx.StatusActive)
	sameID.ID = first.ID
	sameSlug := newTenant(t, tenantctx.StatusActive)
	sameSlug.Slug, sameSlug.Schema = first.Slug, first.Schema
	for name, tn := range map[string]tenantctx.Tenant{"same id": sameID, "same slug": sameSlug} {
		if _, err := c.CreateTenant(ctx, tn); !errors.Is(err, storage.ErrConflict) {
			t.Errorf("CreateTenant(%s) error = %v, want ErrConflict", name, err)
		}
	}
	got, err := c.TenantByID(ctx, first.ID)
	if err != nil {
		t.Fatalf("Tenant(%s): %v", first.ID, err)
	}
	assertSameTenant(t, got, first)
	if _, err := c.TenantByID(ctx, sameSlug.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Tenant(%s) of a conflicting insert: error = %v, want ErrNotFound", sameSlug.ID, err)
	}
}

func testConcurrentCreateSameSlug(t *testing.T, c storage.Catalog) {
	ctx := testContext(t)
	base := newTenant(t, tenantctx.StatusProvisioning)
	const n = 10
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			tn := base
			tn.ID = tenantctx.NewID()
			_, errs[i] = c.CreateTenant(ctx, tn)
		})
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, storage.ErrConflict):
			t.Errorf("CreateTenant #%d: %v, want nil or ErrConflict", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d of %d concurrent creates of slug %s succeeded, want 1", won, n, base.Slug)
	}
}

func testInvalidTenantRejected(t *testing.T, c storage.Catalog) {
	ctx := testContext(t)
	valid := newTenant(t, tenantctx.StatusProvisioning)
	with := func(edit func(*tenantctx.Tenant)) tenantctx.Tenant {
		tn := valid
		edit(&tn)
		return tn
	}
	withSlug := func(slug string) tenantctx.Tenant {
		return with(func(tn *tenantctx.Tenant) { tn.Slug, tn.Schema = slug, tenantctx.SchemaForSlug(slug) })
	}
	tests := []struct {
		name    string
		tenant  tenantctx.Tenant
		wantErr error
	}{
		{"zero tenant", tenantctx.Tenant{}, tenantctx.ErrInvalidID},
		{"sql in slug", withSlug(`a"; drop schema x; --`), tenantctx.ErrInvalidSlug},
		{"path in slug", withSlug("../x"), tenantctx.ErrInvalidSlug},
		{"uppercase slug", withSlug("Acme"), tenantctx.ErrInvalidSlug},
		{"10 KB slug", withSlug(strings.Repeat("a", 10<<10)), tenantctx.ErrInvalidSlug},
		{"reserved slug", withSlug("admin"), tenantctx.ErrReservedSlug},
		{"catalog slug", withSlug("pg_catalog"), tenantctx.ErrInvalidSlug},
		{"schema not of slug", with(func(tn *tenantctx.Tenant) { tn.Schema = "tenant_other" }), nil},
		{"bad schema", with(func(tn *tenantctx.Tenant) { tn.Schema = "public" }), tenantctx.ErrInvalidSchema},
		{"bad id", with(func(tn *tenantctx.Tenant) { tn.ID = "../../etc" }), tenantctx.ErrInvalidID},
		{"bad status", with(func(tn *tenantctx.Tenant) { tn.Status = "deleted" }), tenantctx.ErrInvalidStatus},
		{"empty status", with(func(tn *tenantctx.Tenant) { tn.Status = "" }), tenantctx.ErrInvalidStatus},
	}
	for _, tt := range tests {
		_, err := c.CreateTenant(ctx, tt.tenant)
		if err == nil {
			t.Errorf("CreateTenant(%s) = nil error, want rejection", tt.name)
			continue
		}
		if errors.Is(err, storage.ErrConflict) || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
			t.Errorf("CreateTenant(%s) error = %v, want %v", tt.name, err, tt.wantErr)
		}
	}
	page, err := c.ListTenants(ctx, storage.ListOptions{})
	if err != nil {
		t.Fatalf("ListTenants: %v", err)
	}
	if len(page) != 0 {
		t.Errorf("after rejected creates the catalog holds %d tenants, want 0: %+v", len(page), page)
	}
}

func testHostileLookups(t *testing.T, c storage.Catalog) {
	ctx := testContext(t)
	mustCreate(t, ctx, c, tenantctx.StatusActive)
	for _, s := range []string{
		"", "../x", "a'; drop table tenancy.tenants; --", "a\x00b", "%", "_",
		strings.Repeat("a", 10<<10), "ACME", " acme",
	} {
		if _, err := c.TenantByID(ctx, s); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Tenant(%.20q) error = %v, want ErrNotFound", s, err)
		}
		if _, err := c.TenantBySlug(ctx, s); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("TenantBySlug(%.20q) error = %v, want ErrNotFound", s, err)
		}
	}
}
