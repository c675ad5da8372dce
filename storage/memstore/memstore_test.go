package memstore_test

import (
	"testing"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/storage/storagetest"
	"github.com/invoicing/tenantworker/tenantctx"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storagetest.TestCatalog(t, func(*testing.T) storage.Catalog { return memstore.New() })
}

func TestQueriesCountsLookups(t *testing.T) {
	t.Parallel()
	m := memstore.New()
	ctx := t.Context()
	tn, err := tenantctx.New("counted", "Tenant counted", "pro")
	if err != nil {
		t.Fatal(err)
	}
	tn.Status = tenantctx.StatusActive
	if tn, err = m.CreateTenant(ctx, tn); err != nil {
		t.Fatal(err)
	}
	key, err := m.CreateAPIKey(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		lookup func()
		want   int64
	}{
		{"tenant", func() { _, _ = m.TenantByID(ctx, tn.ID) }, 1},
		{"unknown slug", func() { _, _ = m.TenantBySlug(ctx, "unknown-slug") }, 1},
		{"api key", func() { _, _ = m.TenantForAPIKey(ctx, key) }, 1},
		{"list", func() { _, _ = m.ListTenants(ctx, storage.ListOptions{}) }, 0},
		{"malformed id", func() { _, _ = m.TenantByID(ctx, "../x") }, 0},
		{"malformed slug", func() { _, _ = m.TenantBySlug(ctx, "ACME") }, 0},
		{"malformed key", func() { _, _ = m.TenantForAPIKey(ctx, "not-a-key") }, 0},
	}
	for _, tt := range tests {
		before := m.Queries()
		tt.lookup()
		if got := m.Queries() - before; got != tt.want {
			t.Errorf("%s: counted %d queries, want %d", tt.name, got, tt.want)
		}
	}
}
