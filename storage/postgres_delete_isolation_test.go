package storage_test

import (
	"errors"
	"testing"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestDeleteTenantOnARepeatableReadCatalogLocksAKeyIssuedMeanwhile: on a
// catalog database whose default_transaction_isolation is repeatable read
// or serializable, a tenant's deletion that waited for a key's issuance
// in flight (it holds the tenant's row share-locked until it commits)
// deletes the tenant and that key: its lock of the keys, a statement
// after the wait, sees the key committed meanwhile, as DeleteTenant's
// order of locks needs.
func TestDeleteTenantOnARepeatableReadCatalogLocksAKeyIssuedMeanwhile(t *testing.T) {
	t.Parallel()
	for _, level := range catalogIsolations {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			b := catalogAt(t, level)
			ctx := testContext(t)
			owner := mustCreateTenant(t, ctx, b.catalog, "leaving", tenantctx.StatusProvisioning)
			_, ktx := keyIssuanceInFlight(t, ctx, b, owner.ID)
			err := commitAfterItWaits(t, ctx, b, ktx, "the deletion to wait for the issuance in flight", "", func() error {
				return b.catalog.DeleteTenant(ctx, owner.ID)
			})
			if err != nil {
				t.Errorf("DeleteTenant while a key's issuance was in flight: %v, want it deleted", err)
			}
			if _, err := b.catalog.TenantByID(ctx, owner.ID); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("after the deletion TenantByID = %v, want ErrNotFound", err)
			}
		})
	}
}
