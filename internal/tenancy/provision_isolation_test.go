package tenancy_test

import (
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestProvisioningCheckOnARepeatableReadCatalogWaitsForAWrite: a new
// tenant on another database than the catalog's has its schema created
// only while the catalog, read in a transaction of the catalog's database
// that share-locks the tenant's row, says it is still provisioning. On a
// catalog database whose default_transaction_isolation is repeatable read
// or serializable, that check waits for another write of the row (an
// operator's change of the tenant's plan, in flight) and then reads the
// row as committed: it runs at read committed. Before, the row was newer
// than the check's snapshot and the lock was refused (SQLSTATE 40001):
// the tenant's migration failed, and the tenant stayed provisioning until
// a retry.
func TestProvisioningCheckOnARepeatableReadCatalogWaitsForAWrite(t *testing.T) {
	t.Parallel()
	for _, level := range []string{"repeatable read", "serializable"} {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			b := setupTwoServers(t)
			setDatabaseDefault(t, b.ctx, b.pool, "default_transaction_isolation", level)
			b.pool.Reset() // new connections take the setting
			p, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: "checked", Database: "second"}, "test")
			if err != nil {
				t.Fatal(err)
			}

			// A write of the tenant's row, not yet committed.
			tx, err := b.pool.Begin(b.ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(b.ctx)
			if _, err := tx.Exec(b.ctx, `UPDATE tenancy.tenants SET plan = plan, updated_at = now() WHERE id = $1`, p.Tenant.ID); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := b.svc.Migrate(b.ctx, p.Tenant, 0, tenancy.ActorWorker)
				done <- err
			}()
			testenv.WaitFor(t, 30*time.Second, "the provisioning check to wait for the write in flight", func() bool {
				n, err := testenv.LockWaiters(b.ctx, b.pool, "FOR SHARE")
				return err == nil && n > 0
			})
			if err := tx.Commit(b.ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Errorf("Migrate of a provisioning tenant after its check waited for a write of its row: %v, want it migrated", err)
			}
			if got, err := b.catalog.TenantByID(b.ctx, p.Tenant.ID); err != nil || got.Status != tenantctx.StatusActive {
				t.Errorf("after the migration the tenant is %s (err %v), want active", got.Status, err)
			}
		})
	}
}
