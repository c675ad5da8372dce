package tenancy_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
)

// migratedThenAuditLost runs the tenant's migration (as a worker runs the
// tenant:migrate of a POST /admin/migrations, which includes provisioning
// tenants, or of an enqueue whose answer was lost) right before the
// provisioning records itself, then reports that record's connection
// reset: a step after the catalog row fails once the schema exists.
type migratedThenAuditLost struct {
	storage.Catalog
	worker *tenancy.Service
}

func (c migratedThenAuditLost) AppendAudit(ctx context.Context, e storage.AuditEntry) error {
	if e.Action != string(tenancy.ActionProvisioned) {
		return c.Catalog.AppendAudit(ctx, e)
	}
	tn, err := c.Catalog.TenantByID(ctx, e.TenantID)
	if err != nil {
		return err
	}
	if _, err := c.worker.Migrate(ctx, tn, 0, tenancy.ActorWorker); err != nil {
		return fmt.Errorf("the worker's migration: %w", err)
	}
	return fmt.Errorf("append audit: %w", errConnReset)
}

// TestProvisionAbortedAfterItsMigrationKeepsNothing: a provisioning that
// fails after a worker migrated its tenant (schema and document
// directories created) must still keep nothing, as README promises ("a
// retry can take the slug"): the clean-up withdrew the catalog row only,
// so the schema stayed, owned by a tenant that no longer exists, and every
// later provisioning of the slug was refused (409, schema left over) until
// an operator dropped it by hand.
func TestProvisionAbortedAfterItsMigrationKeepsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	svc := tenancy.New(tenancy.Config{Catalog: migratedThenAuditLost{b.catalog, b.svc}, Enqueuer: b.enqueuer, Documents: b.docs, SchemaPool: b.pool})
	_, err := svc.Provision(b.ctx, tenancy.NewTenant{Slug: "migratedfirst"}, tenancy.ActorAdmin)
	if err == nil {
		t.Fatal("Provision with its audit entry failing succeeded")
	}
	t.Logf("Provision: %v", err)
	if tn, err := b.catalog.TenantBySlug(b.ctx, "migratedfirst"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("after the failed Provision the catalog holds %s in status %s (err %v); want nothing kept", tn.ID, tn.Status, err)
	}
	if b.schemaExists(t, "tenant_migratedfirst") {
		t.Errorf("after the failed Provision its schema tenant_migratedfirst is left over")
	}
	if _, err := b.svc.Provision(b.ctx, tenancy.NewTenant{Slug: "migratedfirst"}, tenancy.ActorAdmin); err != nil {
		t.Errorf("retried Provision: %v", err)
	}
}
