package storagetest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// NewCatalogFunc returns a new, empty catalog for one test; whatever it
// holds is released through t.Cleanup.
type NewCatalogFunc func(t *testing.T) storage.Catalog

// TestCatalog runs the conformance suite against the catalogs newCatalog
// returns. Each subtest runs in parallel on its own empty catalog.
func TestCatalog(t *testing.T, newCatalog NewCatalogFunc) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(*testing.T, storage.Catalog)
	}{
		{"CreateAndGet", testCreateAndGet},
		{"Conflict", testConflict},
		{"ConcurrentCreateSameSlug", testConcurrentCreateSameSlug},
		{"InvalidTenantRejected", testInvalidTenantRejected},
		{"HostileLookups", testHostileLookups},
		{"ListPaging", testListPaging},
		{"StatusTransitions", testStatusTransitions},
		{"SetStatusUnknownOrInvalid", testSetStatusUnknownOrInvalid},
		{"SetStatusFrom", testSetStatusFrom},
		{"SetLimits", testSetLimits},
		{"SetTimeZone", testSetTimeZone},
		{"Delete", testDelete},
		{"WithdrawTenant", testWithdrawTenant},
		{"APIKeys", testAPIKeys},
		{"APIKeysRejected", testAPIKeysRejected},
		{"APIKeyLifecycle", testAPIKeyLifecycle},
		{"APIKeyWithdrawal", testAPIKeyWithdrawal},
		{"Audit", testAudit},
		{"AuditOnce", testAuditOnce},
		{"AuditUnlessLatest", testAuditUnlessLatest},
		{"Placement", testPlacement},
		{"RemoveDatabase", testRemoveDatabase},
		{"QueuePauses", testQueuePauses},
		{"SyncQueuePauses", testSyncQueuePauses},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newCatalog(t))
		})
	}
}

// testContext returns a context that ends with the test or after a minute.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// slugSeq makes slugs unique within a test binary.
var slugSeq atomic.Int64

// newTenant returns a valid, not yet stored tenant with a unique slug and
// the given status.
func newTenant(t *testing.T, status tenantctx.Status) tenantctx.Tenant {
	t.Helper()
	slug := fmt.Sprintf("t%d-%d", time.Now().UnixNano()%1e6, slugSeq.Add(1))
	tn, err := tenantctx.New(slug, "Tenant "+slug, "pro")
	if err != nil {
		t.Fatalf("tenantctx.New(%q): %v", slug, err)
	}
	tn.Status = status
	return tn
}

// mustCreate stores a new tenant with the given status.
func mustCreate(t *testing.T, ctx context.Context, c storage.Catalog, status tenantctx.Status) tenantctx.Tenant {
	t.Helper()
	created, err := c.CreateTenant(ctx, newTenant(t, status))
	if err != nil {
		t.Fatalf("CreateTenant: %v", err)
	}
	return created
}

// assertSameTenant fails unless got and want agree on every field
// (timestamps compared as instants).
func assertSameTenant(t *testing.T, got, want tenantctx.Tenant) {
	t.Helper()
	if got.ID != want.ID || got.Slug != want.Slug || got.Name != want.Name ||
		got.Status != want.Status || got.Schema != want.Schema || got.Plan != want.Plan ||
		got.DatabaseName() != want.DatabaseName() || got.TimeZoneName() != want.TimeZoneName() {
		t.Errorf("tenant = %+v, want %+v", got, want)
	}
	if !got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Errorf("tenant %s timestamps = (%v, %v), want (%v, %v)",
			got.ID, got.CreatedAt, got.UpdatedAt, want.CreatedAt, want.UpdatedAt)
	}
}
