package storage_test

import (
	"errors"
	"testing"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestWithdrawalsOnARepeatableReadCatalogWaitForACreationInFlight: on a
// catalog database whose default_transaction_isolation is repeatable read
// or serializable (an operator's ALTER DATABASE, or a role's setting), a
// withdrawal that waited for the creation it withdraws (a tenant's, an
// API key's, whose INSERT PostgreSQL still ran after its caller gave up on
// the answer) takes back what that creation committed: the tenant is
// deleted, the key revoked. Each runs at read committed, which its
// statement (claim, wait on the unique id or hash, then take back the row
// found there) is made for. Before, its snapshot was older than the row
// it waited for, which PostgreSQL then refuses to update (SQLSTATE 40001):
// the withdrawal failed and left the provisioning tenant holding its slug
// (ErrLeftInProvisioning), or the key nobody received valid
// (ErrKeyLeftIssued).
func TestWithdrawalsOnARepeatableReadCatalogWaitForACreationInFlight(t *testing.T) {
	t.Parallel()
	for _, level := range catalogIsolations {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			b := catalogAt(t, level)
			ctx := testContext(t)

			// A tenant whose creation is in flight.
			tn, err := tenantctx.New("inflight", "In Flight", "pro")
			if err != nil {
				t.Fatal(err)
			}
			tn.Status = tenantctx.StatusProvisioning
			tx := inFlight(t, ctx, b)
			if err := storage.CreateTenantIn(ctx, tx, tn); err != nil {
				t.Fatalf("the creation in flight: %v", err)
			}
			err = commitAfterItWaits(t, ctx, b, tx, "the tenant's withdrawal to wait for its creation in flight", "", func() error {
				return b.catalog.WithdrawTenant(ctx, tn.ID)
			})
			if err != nil {
				t.Errorf("WithdrawTenant while its creation was in flight: %v, want it deleted", err)
			}
			if got, err := b.catalog.TenantBySlug(ctx, tn.Slug); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("after the withdrawal the catalog holds %s in status %s (err %v), want nothing", got.ID, got.Status, err)
			}

			// A key whose issuance is in flight.
			owner := mustCreateTenant(t, ctx, b.catalog, "keyed", tenantctx.StatusProvisioning)
			key, ktx := keyIssuanceInFlight(t, ctx, b, owner.ID)
			err = commitAfterItWaits(t, ctx, b, ktx, "the key's withdrawal to wait for its issuance in flight", "", func() error {
				_, err := b.catalog.WithdrawAPIKey(ctx, owner.ID, key)
				return err
			})
			if err != nil {
				t.Errorf("WithdrawAPIKey while its issuance was in flight: %v, want it revoked", err)
			}
			if id, err := b.catalog.TenantForAPIKey(ctx, key); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("after the withdrawal the key authenticates tenant %q (err %v), want it revoked", id, err)
			}
		})
	}
}
