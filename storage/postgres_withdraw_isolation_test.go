package storage_test

import (
	"errors"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
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
	for _, level := range []string{"repeatable read", "serializable"} {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			b := setupPostgres(t)
			ctx := testContext(t)
			if _, err := b.pool.Exec(ctx, "DO $$BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_isolation = %L', current_database(), '"+level+"'); END$$"); err != nil {
				t.Fatal(err)
			}
			b.pool.Reset() // new connections take the setting

			// A tenant whose creation is in flight.
			tn, err := tenantctx.New("inflight", "In Flight", "pro")
			if err != nil {
				t.Fatal(err)
			}
			tn.Status = tenantctx.StatusProvisioning
			tx, err := b.pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tx.Rollback(ctx) }()
			if err := storage.CreateTenantIn(ctx, tx, tn); err != nil {
				t.Fatalf("the creation in flight: %v", err)
			}
			withdrawn := make(chan error, 1)
			go func() { withdrawn <- b.catalog.WithdrawTenant(ctx, tn.ID) }()
			testenv.WaitFor(t, 30*time.Second, "the tenant's withdrawal to wait for its creation in flight", func() bool {
				n, err := testenv.LockWaiters(ctx, b.pool, "") // its own database's: the server is shared
				return err == nil && n > 0
			})
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-withdrawn; err != nil {
				t.Errorf("WithdrawTenant while its creation was in flight: %v, want it deleted", err)
			}
			if got, err := b.catalog.TenantBySlug(ctx, tn.Slug); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("after the withdrawal the catalog holds %s in status %s (err %v), want nothing", got.ID, got.Status, err)
			}

			// A key whose issuance is in flight.
			owner, err := tenantctx.New("keyed", "Keyed", "pro")
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
			keyWithdrawn := make(chan error, 1)
			go func() {
				_, err := b.catalog.WithdrawAPIKey(ctx, owner.ID, key)
				keyWithdrawn <- err
			}()
			testenv.WaitFor(t, 30*time.Second, "the key's withdrawal to wait for its issuance in flight", func() bool {
				n, err := testenv.LockWaiters(ctx, b.pool, "")
				return err == nil && n > 0
			})
			if err := ktx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-keyWithdrawn; err != nil {
				t.Errorf("WithdrawAPIKey while its issuance was in flight: %v, want it revoked", err)
			}
			if id, err := b.catalog.TenantForAPIKey(ctx, key); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("after the withdrawal the key authenticates tenant %q (err %v), want it revoked", id, err)
			}
		})
	}
}
