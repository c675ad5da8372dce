package storage_test

import (
	"testing"

	"github.com/invoicing/tenantworker/tenantctx"
)

// TestTenantRowWritesOnARepeatableReadCatalogWaitForAnotherWrite: on a
// catalog database whose default_transaction_isolation is repeatable read
// or serializable, a status change (a suspension, an activation, a
// deletion request), a change of limits, of time zone or of placement (a
// tenant move's switch) that waited for
// another uncommitted write of the tenant's row (an operator's change of
// plan) makes its change once that write commits: it runs at read
// committed, where PostgreSQL checks the committed row again. Before, the
// row was newer than the statement's snapshot and the change was refused
// with SQLSTATE 40001.
func TestTenantRowWritesOnARepeatableReadCatalogWaitForAnotherWrite(t *testing.T) {
	t.Parallel()
	writes := []struct {
		name  string
		write func(t *testing.T, b postgresBundle, id string) error
		check func(t *testing.T, got tenantctx.Tenant)
	}{
		{"SetStatus", func(t *testing.T, b postgresBundle, id string) error {
			_, err := b.catalog.SetStatus(testContext(t), id, tenantctx.StatusSuspended)
			return err
		}, func(t *testing.T, got tenantctx.Tenant) {
			if got.Status != tenantctx.StatusSuspended {
				t.Errorf("status = %s, want %s", got.Status, tenantctx.StatusSuspended)
			}
		}},
		{"SetLimits", func(t *testing.T, b postgresBundle, id string) error {
			_, err := b.catalog.SetLimits(testContext(t), id, "", tenantctx.Limits{Weight: 3, MaxRunning: 7, MaxWaiting: 70})
			return err
		}, func(t *testing.T, got tenantctx.Tenant) {
			if got.Limits.Weight != 3 || got.Limits.MaxRunning != 7 || got.Limits.MaxWaiting != 70 {
				t.Errorf("limits = %+v, want weight 3, max running 7, max waiting 70", got.Limits)
			}
		}},
		{"SetTimeZone", func(t *testing.T, b postgresBundle, id string) error {
			_, err := b.catalog.SetTimeZone(testContext(t), id, "Europe/Berlin")
			return err
		}, func(t *testing.T, got tenantctx.Tenant) {
			if got.TimeZone != "Europe/Berlin" {
				t.Errorf("time zone = %q, want Europe/Berlin", got.TimeZone)
			}
		}},
		{"SetPlacement", func(t *testing.T, b postgresBundle, id string) error {
			ctx := testContext(t)
			d, err := b.catalog.AddDatabase(ctx, "eu2", "")
			if err != nil {
				t.Fatal(err)
			}
			_, err = b.catalog.SetPlacement(ctx, id, tenantctx.DefaultDatabase, "eu2", d.Generation)
			return err
		}, func(t *testing.T, got tenantctx.Tenant) {
			if got.Database != "eu2" {
				t.Errorf("database = %q, want eu2", got.Database)
			}
		}},
	}
	for _, level := range catalogIsolations {
		for _, w := range writes {
			t.Run(level+"/"+w.name, func(t *testing.T) {
				t.Parallel()
				b := catalogAt(t, level)
				ctx := testContext(t)
				tn := mustCreateTenant(t, ctx, b.catalog, "rowshared", tenantctx.StatusActive)
				// An operator's change of plan, not yet committed.
				tx := inFlight(t, ctx, b)
				if _, err := tx.Exec(ctx, `UPDATE tenancy.tenants SET plan = 'enterprise' WHERE id = $1`, tn.ID); err != nil {
					t.Fatal(err)
				}
				err := commitAfterItWaits(t, ctx, b, tx, "the write to wait for the change of plan", "tenancy.tenants", func() error {
					return w.write(t, b, tn.ID)
				})
				if err != nil {
					t.Fatalf("%s after waiting for another write of the tenant's row: %v, want it made", w.name, err)
				}
				got, err := b.catalog.TenantByID(ctx, tn.ID)
				if err != nil {
					t.Fatal(err)
				}
				w.check(t, got)
				if got.Plan != "enterprise" {
					t.Errorf("plan = %q, want the other write's enterprise kept", got.Plan)
				}
			})
		}
	}
}
