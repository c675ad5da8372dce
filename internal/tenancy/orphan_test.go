package tenancy_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// schemaExists reports whether name exists.
func (b *bundle) schemaExists(t *testing.T, name string) bool {
	t.Helper()
	ok, err := schema.Exists(b.ctx, b.pool, name)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// deleteAndDestroy requests the deletion of id and runs its destroy, as
// DELETE /admin/tenants/{id} and then tenant:destroy do.
func (b *bundle) deleteAndDestroy(t *testing.T, id string) {
	t.Helper()
	d, err := b.svc.RequestDeletion(b.ctx, id, tenancy.ActorAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Destroy(b.ctx, d.Tenant, tenancy.ActorWorker); err != nil {
		t.Fatal(err)
	}
}

// TestMigrationAfterDeletionCreatesNoSchema is P17 of docs/architecture.md:
// a tenant:migrate task resolved its tenant while it was provisioning and
// runs after the tenant was marked deleting, or after it was destroyed. It
// must not create the schema, or the next tenant with the same slug would
// adopt the orphan.
func TestMigrationAfterDeletionCreatesNoSchema(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, destroyed := range []bool{false, true} {
		slug := fmt.Sprintf("gone-%v", destroyed)
		p, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: slug}, "test")
		if err != nil {
			t.Fatal(err)
		}
		stale := p.Tenant // as the worker resolved it: provisioning
		if destroyed {
			b.deleteAndDestroy(t, stale.ID)
		} else if _, err := b.svc.RequestDeletion(b.ctx, stale.ID, tenancy.ActorAdmin); err != nil {
			t.Fatal(err)
		}
		_, err = b.svc.Migrate(b.ctx, stale, 0, tenancy.ActorWorker)
		if !errors.Is(err, tenancy.ErrRefused) {
			t.Errorf("destroyed=%v: migration of a tenant deleted meanwhile = %v, want ErrRefused", destroyed, err)
		}
		if b.schemaExists(t, stale.Schema) {
			t.Fatalf("destroyed=%v: the migration created schema %s for a tenant being deleted", destroyed, stale.Schema)
		}
		if b.documentsExist(t, stale.ID) {
			t.Errorf("destroyed=%v: the migration made document directories for a tenant being deleted", destroyed)
		}
	}

	// The slug is free again: a new tenant gets a schema of its own.
	b.deleteAndDestroy(t, mustTenantBySlug(t, b, "gone-false").ID)
	for _, slug := range []string{"gone-false", "gone-true"} {
		tn := b.active(t, slug) // fails unless the schema was created by this migration
		b.mustHaveDocumentDir(t, tn.ID, invoice.DocumentDir)
		if _, owner, err := schema.Owner(b.ctx, b.pool, tn.Schema); err != nil || owner != tn.ID {
			t.Errorf("schema %s records owner %q (%v), want %s", tn.Schema, owner, err, tn.ID)
		}
	}
}

func mustTenantBySlug(t *testing.T, b *bundle, slug string) tenantctx.Tenant {
	t.Helper()
	tn, err := b.catalog.TenantBySlug(b.ctx, slug)
	if err != nil {
		t.Fatal(err)
	}
	return tn
}

// TestMigrateRacingDeletionLeavesNoSchema: provisioning migrations and
// deletions of the same tenants, run at the same time, leave no schema
// behind, whichever comes first.
func TestMigrateRacingDeletionLeavesNoSchema(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 12
	for i := range n {
		p, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: fmt.Sprintf("race-%02d", i)}, "test")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var migErr error
		wg.Go(func() {
			if i%2 == 1 {
				time.Sleep(time.Duration(i) * time.Millisecond)
			}
			_, migErr = b.svc.Migrate(b.ctx, p.Tenant, 0, tenancy.ActorWorker)
		})
		wg.Go(func() {
			if i%2 == 0 {
				time.Sleep(time.Duration(i) * time.Millisecond)
			}
			b.deleteAndDestroy(t, p.Tenant.ID)
		})
		wg.Wait()
		if migErr != nil && !errors.Is(migErr, tenancy.ErrRefused) {
			t.Errorf("tenant %d: migration racing a deletion = %v, want nil or ErrRefused", i, migErr)
		}
		if b.schemaExists(t, p.Tenant.Schema) {
			t.Errorf("tenant %d: schema %s left over after its deletion (migration: %v)", i, p.Tenant.Schema, migErr)
		}
		if b.documentsExist(t, p.Tenant.ID) {
			t.Errorf("tenant %d: document directories left over after its deletion (migration: %v)", i, migErr)
		}
	}
}

// TestMigrationWaitsForNoDeletionItRaces: a provisioning migration blocked
// on the tenant's lock while the tenant is marked deleting and its destroy
// queues behind it: the migration creates nothing and is refused; the
// destroy completes.
func TestMigrationWaitsForNoDeletionItRaces(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: "blocked"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	// Hold the tenant's lock, as a migration step or a drop would.
	holder, err := b.pool.Begin(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(context.WithoutCancel(b.ctx))
	if _, err := holder.Exec(b.ctx, "SELECT pg_catalog.pg_advisory_xact_lock(1952804468, pg_catalog.hashtext($1))", p.Tenant.Schema); err != nil {
		t.Fatal(err)
	}
	migrated := make(chan error, 1)
	go func() {
		_, err := b.svc.Migrate(b.ctx, p.Tenant, 0, tenancy.ActorWorker)
		migrated <- err
	}()
	waitForLockWaiters(t, b, p.Tenant.Schema, 1)
	d, err := b.svc.RequestDeletion(b.ctx, p.Tenant.ID, tenancy.ActorAdmin)
	if err != nil {
		t.Fatal(err)
	}
	destroyed := make(chan error, 1)
	go func() {
		_, err := b.svc.Destroy(b.ctx, d.Tenant, tenancy.ActorWorker)
		destroyed <- err
	}()
	waitForLockWaiters(t, b, p.Tenant.Schema, 2)
	if err := holder.Rollback(b.ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-migrated; !errors.Is(err, tenancy.ErrRefused) || !strings.Contains(err.Error(), "deleting, not provisioning") {
		t.Errorf("migration blocked while the tenant was marked deleting = %v, want ErrRefused (not provisioning)", err)
	}
	if err := <-destroyed; err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if b.schemaExists(t, p.Tenant.Schema) {
		t.Fatalf("schema %s left over", p.Tenant.Schema)
	}
}

// waitForLockWaiters waits until n sessions of the test's database wait
// for the tenant lock of schemaName.
func waitForLockWaiters(t *testing.T, b *bundle, schemaName string, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var waiting int
		err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM pg_catalog.pg_locks
			WHERE locktype = 'advisory' AND NOT granted
			  AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
			  AND objid::int4 = pg_catalog.hashtext($1)`, schemaName).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions wait for the lock of %s after a minute, want %d", waiting, schemaName, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestProvisionRefusesLeftoverSchema: a schema left over under a slug (by
// hand, or from a deleted tenant, recorded as its owner) makes Provision
// refuse the slug, naming the schema, before anything is created.
func TestProvisionRefusesLeftoverSchema(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if _, err := schema.Migrate(b.ctx, b.pool, "tenant_by_hand", 0); err != nil {
		t.Fatal(err)
	}
	old := tenantctx.NewID()
	if _, err := schema.MigrateWith(b.ctx, b.pool, "tenant_left_over", schema.MigrateOptions{Create: &schema.Creation{Owner: old}}); err != nil {
		t.Fatal(err)
	}
	for slug, whose := range map[string]string{"by-hand": "records no owner", "left-over": "was created for tenant " + old} {
		_, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: slug}, "test")
		if !errors.Is(err, tenancy.ErrSchemaLeftOver) || !errors.Is(err, storage.ErrConflict) || !strings.Contains(err.Error(), whose) {
			t.Errorf("Provision(%s) over a leftover schema = %v, want ErrSchemaLeftOver (a conflict) saying it %s", slug, err, whose)
		}
		if _, err := b.catalog.TenantBySlug(b.ctx, slug); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Provision(%s) refused, but the catalog has the tenant: %v", slug, err)
		}
	}

	// The schema of a live tenant is no leftover: its slug is just taken.
	live := b.active(t, "alive")
	if _, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: live.Slug}, "test"); !errors.Is(err, storage.ErrConflict) || errors.Is(err, tenancy.ErrSchemaLeftOver) {
		t.Errorf("Provision of a live tenant's slug = %v, want a conflict, not a leftover schema", err)
	}
}

// TestProvisioningMigrationAdoptsNoSchema: a schema that appears under a
// provisioning tenant's name after Provision checked (made by hand, or by
// another tenant) is not migrated nor adopted: the migration is refused
// and the tenant stays provisioning. Its own schema, from an earlier
// attempt, is finished and activated.
func TestProvisioningMigrationAdoptsNoSchema(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: "squatted"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := schema.Migrate(b.ctx, b.pool, p.Tenant.Schema, 0); err != nil {
		t.Fatal(err)
	}
	b.inTenantSchema(t, p.Tenant.Schema, `INSERT INTO customers (name, email) VALUES ('Someone Else', 'x@example.org')`)
	_, err = b.svc.Migrate(b.ctx, p.Tenant, 0, tenancy.ActorWorker)
	if !errors.Is(err, tenancy.ErrRefused) || !errors.Is(err, schema.ErrSchemaTaken) {
		t.Errorf("migration of a provisioning tenant over a schema it did not create = %v, want ErrRefused (schema taken)", err)
	}
	if tn, err := b.catalog.TenantByID(b.ctx, p.Tenant.ID); err != nil || tn.Status != tenantctx.StatusProvisioning {
		t.Errorf("tenant after the refused migration: %+v, %v; want it still provisioning", tn, err)
	}

	// An earlier attempt created the tenant's own schema (one step), then
	// failed: the next attempt finishes it.
	own, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: "retried"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := schema.MigrateWith(b.ctx, b.pool, own.Tenant.Schema, schema.MigrateOptions{Target: 1, Create: &schema.Creation{Owner: own.Tenant.ID}}); err != nil {
		t.Fatal(err)
	}
	res, err := b.svc.Migrate(b.ctx, own.Tenant, 0, tenancy.ActorWorker)
	if err != nil || !res.Activated || res.Created || res.From != 1 || res.To != schema.LatestVersion() {
		t.Errorf("retried migration of its own schema = %+v, %v; want it finished and activated", res, err)
	}

	// An active tenant whose schema is gone gets no new one.
	live := b.active(t, "dropped")
	if err := schema.Drop(b.ctx, b.pool, live.Schema); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Migrate(b.ctx, live, 0, tenancy.ActorWorker); !errors.Is(err, tenancy.ErrRefused) || !errors.Is(err, schema.ErrNoSchema) {
		t.Errorf("migration of an active tenant without a schema = %v, want ErrRefused (no schema)", err)
	}
	if b.schemaExists(t, live.Schema) {
		t.Errorf("the migration recreated schema %s of an active tenant", live.Schema)
	}
}

// inTenantSchema runs sql with search_path pinned to name.
func (b *bundle) inTenantSchema(t *testing.T, name, sql string) {
	t.Helper()
	err := pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(b.ctx, "SELECT pg_catalog.set_config('search_path', $1, true)", pgx.Identifier{name}.Sanitize()); err != nil {
			return err
		}
		_, err := tx.Exec(b.ctx, sql)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDestroyAgainSparesTheSlugsNewTenant: tenant:destroy is safe to run
// again, also after the slug went to a new tenant (whose schema has the
// same name): the rerun of the old tenant's destroy leaves the new
// tenant's schema alone.
func TestDestroyAgainSparesTheSlugsNewTenant(t *testing.T) {
	t.Parallel()
	b := setup(t)
	old := b.active(t, "reused")
	d, err := b.svc.RequestDeletion(b.ctx, old.ID, tenancy.ActorAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Destroy(b.ctx, d.Tenant, tenancy.ActorWorker); err != nil {
		t.Fatal(err)
	}
	fresh := b.active(t, "reused")
	if _, owner, _ := schema.Owner(b.ctx, b.pool, fresh.Schema); owner != fresh.ID {
		t.Fatalf("the new tenant's schema records owner %q, want %s", owner, fresh.ID)
	}
	// The old tenant's destroy runs again (a re-delivered task, with the
	// tenant the worker resolved before).
	if _, err := b.svc.Destroy(b.ctx, d.Tenant, tenancy.ActorWorker); err != nil {
		t.Fatal(err)
	}
	if !b.schemaExists(t, fresh.Schema) {
		t.Fatalf("old tenant %s's destroy dropped schema %s of the new tenant %s", old.ID, fresh.Schema, fresh.ID)
	}
}

// TestLateMigrationOfADeletedTenantSparesTheSlugsNewTenant is P17 for an
// existing tenant's migration: a tenant:migrate that resolved its tenant
// while it was active (migrate --all, say) and runs only once the tenant
// was destroyed and its slug given to a new tenant (its worker waited, for
// a connection say) must not migrate the new tenant's schema of the same
// name. Here the new tenant is at an older version, as one provisioned by
// a worker of the previous release during a rolling deploy is: the late
// migration is refused, applies nothing to the new tenant's schema and
// records nothing for the erased tenant.
func TestLateMigrationOfADeletedTenantSparesTheSlugsNewTenant(t *testing.T) {
	t.Parallel()
	b := setup(t)
	stale := b.active(t, "migrated-late") // as the worker resolved it: active
	b.deleteAndDestroy(t, stale.ID)

	const older = 3
	p, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: "migrated-late"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if res, err := b.svc.Migrate(b.ctx, p.Tenant, older, tenancy.ActorWorker); err != nil || !res.Activated || res.To != older {
		t.Fatalf("Migrate of the new tenant to version %d = %+v, %v", older, res, err)
	}
	before := len(b.audit(t, stale.ID))

	res, err := b.svc.Migrate(b.ctx, stale, 0, tenancy.ActorWorker)
	if !errors.Is(err, tenancy.ErrRefused) || !errors.Is(err, schema.ErrSchemaTaken) {
		t.Errorf("late migration of the deleted tenant = %+v, %v; want ErrRefused wrapping schema.ErrSchemaTaken", res, err)
	}
	if v, err := schema.Version(b.ctx, b.pool, p.Tenant.Schema); err != nil || v != older {
		t.Errorf("the new tenant's schema %s is at version %d (%v) after the deleted tenant's migration, want %d: migrated for the wrong tenant",
			p.Tenant.Schema, v, err, older)
	}
	if after := b.audit(t, stale.ID); len(after) != before {
		t.Errorf("the erased tenant's audit log grew from %d to %d entries (last: %s %s)", before, len(after), after[len(after)-1].Action, after[len(after)-1].Detail)
	}
}
