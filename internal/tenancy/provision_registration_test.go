package tenancy_test

import (
	"errors"
	"testing"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/tenancy"
)

// TestProvisionChecksTheCurrentRegistration: database eu2 is removed
// and registered again on another server by another process (`enqueue db
// remove`, `db add`). This process still holds the pool of eu2's old
// registration, from a tenant it provisioned there before. A schema is left
// over under the slug "foo" on eu2's new server: provisioning "foo" on eu2
// must refuse it (ErrSchemaLeftOver), as it does on any one server; it must
// not look at the removed registration's server.
func TestProvisionChecksTheCurrentRegistration(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rr := newReregistration(t)
	pool, catalog, docs, urlA, urlB, pools, operator := rr.pool, rr.catalog, rr.docs, rr.urlA, rr.urlB, rr.pools, rr.operator
	onB := rr.direct(t, urlB)
	if _, err := operator.Add(ctx, "eu2", urlA); err != nil {
		t.Fatal(err)
	}
	_, enq, _ := fairOn(t, catalog)
	svc := tenancy.New(tenancy.Config{Catalog: catalog, Enqueuer: enq, Documents: docs, SchemaPool: pool,
		Pools: pools, Plans: fair.DefaultPlans()})

	// A tenant on eu2's first registration, gone again: eu2 holds none.
	p, err := svc.Provision(ctx, tenancy.NewTenant{Slug: "early", Database: "eu2"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Migrate(ctx, p.Tenant, 0, tenancy.ActorWorker); err != nil {
		t.Fatal(err)
	}
	del, err := svc.RequestDeletion(ctx, p.Tenant.ID, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Destroy(ctx, del.Tenant, "test"); err != nil {
		t.Fatal(err)
	}
	if err := operator.Remove(ctx, "eu2"); err != nil {
		t.Fatal(err)
	}
	if _, err := operator.Add(ctx, "eu2", urlB); err != nil {
		t.Fatal(err)
	}
	if _, err := onB.Exec(ctx, `CREATE SCHEMA tenant_foo; CREATE TABLE tenant_foo.old_rows (x int)`); err != nil {
		t.Fatal(err)
	}

	foo, err := svc.Provision(ctx, tenancy.NewTenant{Slug: "foo", Database: "eu2"}, "test")
	if err == nil {
		tn, _ := catalog.TenantByID(ctx, foo.Tenant.ID)
		_, merr := svc.Migrate(ctx, tn, 0, tenancy.ActorWorker)
		t.Logf("provisioned anyway; its tenant:migrate then fails with: %v", merr)
	}
	if !errors.Is(err, tenancy.ErrSchemaLeftOver) {
		t.Fatalf("Provision of foo on eu2, whose server holds a tenant_foo left over: %v; want ErrSchemaLeftOver", err)
	}
}
