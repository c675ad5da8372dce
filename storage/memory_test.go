package storage_test

import (
	"testing"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/storage/storagetest"
	"github.com/invoicing/tenantworker/tenantctx"
)

func TestMemoryConformance(t *testing.T) {
	t.Parallel()
	storagetest.TestCatalog(t, func(*testing.T) storage.Catalog { return storage.NewMemory() })
}

func TestMemoryQueriesCountsLookups(t *testing.T) {
	t.Parallel()
	m := storage.NewMemory()
	ctx := t.Context()
	tn := mustCreateTenant(t, ctx, m, "counted", tenantctx.StatusActive)
	key, err := m.CreateAPIKey(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		lookup func()
		want   int64
	}{
		{"tenant", func() { _, _ = m.Tenant(ctx, tn.ID) }, 1},
		{"unknown slug", func() { _, _ = m.TenantBySlug(ctx, "unknown-slug") }, 1},
		{"api key", func() { _, _ = m.TenantForAPIKey(ctx, key) }, 1},
		{"list", func() { _, _ = m.ListTenants(ctx, storage.ListOptions{}) }, 0},
		{"malformed id", func() { _, _ = m.Tenant(ctx, "../x") }, 0},
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
