package tenancy_test

import (
	"testing"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestProvisionByLoadSkipsAServerThatIsDown stops the PostgreSQL server
// of the database with the fewest tenants: a tenant provisioned without a
// database ("the one with the fewest tenants") still goes to a database
// that answers, as "A server that is down fails only its own tenants'
// tasks" promises, instead of every new tenant failing while it is down.
func TestProvisionByLoadSkipsAServerThatIsDown(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, catalog, docs := catalogOn(t)
	server := testenv.StartPostgres(t)
	secondURL := server.CreateDatabase(t)
	pools := placement.New(placement.Options{MainPool: pool, URLs: map[string]string{"second": secondURL}, Catalog: catalog, MaxConns: 2})
	t.Cleanup(func() { _ = pools.Close() })
	if err := pools.Register(ctx); err != nil {
		t.Fatal(err)
	}
	d, enq, _ := fairOn(t, catalog)
	svc := tenancy.New(tenancy.Config{Catalog: catalog, Enqueuer: enq, Documents: docs, SchemaPool: pool,
		Pools: pools, Dispatcher: d, Plans: fair.DefaultPlans()})
	if _, err := svc.Provision(ctx, tenancy.NewTenant{Slug: "down-main-0", Database: "main"}, "test"); err != nil {
		t.Fatal(err)
	}
	server.Stop(t)
	p, err := svc.Provision(ctx, tenancy.NewTenant{Slug: "down-new-1"}, "test")
	if err != nil {
		t.Fatalf("provision by load while only the second server is down: %v", err)
	}
	server.Start(t)
	if got := p.Tenant.DatabaseName(); got != "main" {
		t.Errorf("provisioned by load onto %q while its server is down, want main", got)
	}
}
