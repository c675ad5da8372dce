package storage_test

import (
	"errors"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
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
	for _, level := range []string{"repeatable read", "serializable"} {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			b := setupPostgres(t)
			ctx := testContext(t)
			if _, err := b.pool.Exec(ctx, "DO $$BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_isolation = %L', current_database(), '"+level+"'); END$$"); err != nil {
				t.Fatal(err)
			}
			b.pool.Reset() // new connections take the setting
			owner, err := tenantctx.New("leaving", "Leaving", "pro")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.catalog.CreateTenant(ctx, owner); err != nil {
				t.Fatal(err)
			}
			key, _ := storage.NewAPIKey()
			ktx, err := b.pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = ktx.Rollback(ctx) }()
			if err := storage.StoreAPIKeyIn(ctx, ktx, owner.ID, key); err != nil {
				t.Fatalf("the issuance in flight: %v", err)
			}
			deleted := make(chan error, 1)
			go func() { deleted <- b.catalog.DeleteTenant(ctx, owner.ID) }()
			testenv.WaitFor(t, 30*time.Second, "the deletion to wait for the issuance in flight", func() bool {
				n, err := testenv.LockWaiters(ctx, b.pool, "")
				return err == nil && n > 0
			})
			if err := ktx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-deleted; err != nil {
				t.Errorf("DeleteTenant while a key's issuance was in flight: %v, want it deleted", err)
			}
			if _, err := b.catalog.TenantByID(ctx, owner.ID); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("after the deletion TenantByID = %v, want ErrNotFound", err)
			}
		})
	}
}
