package storage_test

import (
	"errors"
	"testing"

	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestKeyRevocationsOnARepeatableReadCatalogWaitForAFlush: on a catalog
// database whose default_transaction_isolation is repeatable read or
// serializable, a revocation (one key's, a tenant's revoke-all) that
// waited for a flush of the keys' last use (RecordAPIKeyUse, which every
// enqueue service runs every few seconds) revokes the key: each runs at
// read committed, where PostgreSQL checks the row the flush committed
// again. Before, that row was newer than its snapshot and the revocation
// was refused (SQLSTATE 40001): an operator's revoke answered 503 and a
// tenant's destroy failed, the key still valid.
func TestKeyRevocationsOnARepeatableReadCatalogWaitForAFlush(t *testing.T) {
	t.Parallel()
	for _, level := range catalogIsolations {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			b := catalogAt(t, level)
			ctx := testContext(t)
			owner := mustCreateTenant(t, ctx, b.catalog, "revoked", tenantctx.StatusProvisioning)
			for _, c := range []struct {
				name   string
				revoke func(k storage.APIKey) error
			}{
				{"RevokeAPIKey", func(k storage.APIKey) error {
					_, err := b.catalog.RevokeAPIKey(ctx, owner.ID, k.ID)
					return err
				}},
				{"RevokeAPIKeys", func(storage.APIKey) error { return b.catalog.RevokeAPIKeys(ctx, owner.ID) }},
			} {
				k, key, err := b.catalog.IssueAPIKey(ctx, owner.ID)
				if err != nil {
					t.Fatal(err)
				}
				// A flush of the key's use, not yet committed.
				tx := inFlight(t, ctx, b)
				if _, err := tx.Exec(ctx, `UPDATE tenancy.api_keys SET last_used_at = now() WHERE id = $1`, k.ID); err != nil {
					t.Fatal(err)
				}
				err = commitAfterItWaits(t, ctx, b, tx, c.name+" to wait for the flush", "revoked_at", func() error { return c.revoke(k) })
				if err != nil {
					t.Errorf("%s after waiting for a flush: %v, want the key revoked", c.name, err)
				}
				if id, err := b.catalog.TenantForAPIKey(ctx, key); !errors.Is(err, storage.ErrNotFound) {
					t.Errorf("%s: after the revocation the key authenticates tenant %q (err %v), want it revoked", c.name, id, err)
				}
			}
		})
	}
}
