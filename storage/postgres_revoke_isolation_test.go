package storage_test

import (
	"errors"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
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
	for _, level := range []string{"repeatable read", "serializable"} {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			b := setupPostgres(t)
			ctx := testContext(t)
			if _, err := b.pool.Exec(ctx, "DO $$BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_isolation = %L', current_database(), '"+level+"'); END$$"); err != nil {
				t.Fatal(err)
			}
			b.pool.Reset() // new connections take the setting
			owner, err := tenantctx.New("revoked", "Revoked", "pro")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.catalog.CreateTenant(ctx, owner); err != nil {
				t.Fatal(err)
			}
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
				tx, err := b.pool.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer func() { _ = tx.Rollback(ctx) }()
				if _, err := tx.Exec(ctx, `UPDATE tenancy.api_keys SET last_used_at = now() WHERE id = $1`, k.ID); err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- c.revoke(k) }()
				testenv.WaitFor(t, 30*time.Second, c.name+" to wait for the flush", func() bool {
					n, err := testenv.LockWaiters(ctx, b.pool, "revoked_at") // its own database's: the server is shared
					return err == nil && n > 0
				})
				if err := tx.Commit(ctx); err != nil {
					t.Fatal(err)
				}
				if err := <-done; err != nil {
					t.Errorf("%s after waiting for a flush: %v, want the key revoked", c.name, err)
				}
				if id, err := b.catalog.TenantForAPIKey(ctx, key); !errors.Is(err, storage.ErrNotFound) {
					t.Errorf("%s: after the revocation the key authenticates tenant %q (err %v), want it revoked", c.name, id, err)
				}
			}
		})
	}
}
