package tenancy_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
)

// TestMoveOnASmallPool: a move from "main" on a catalog pool of two
// connections (DB_MAX_CONNS=2 without MIGRATIONS_DATABASE_URL) completes:
// the move lock's connection must not starve the copy and the switch.
func TestMoveOnASmallPool(t *testing.T) {
	t.Parallel()
	moveOnAPoolOf(t, 2)
}

// TestMoveOnAOneConnectionPool: a move from "main" on a catalog pool of one
// connection (DB_MAX_CONNS=1, WORKER_CONCURRENCY=1, without
// MIGRATIONS_DATABASE_URL) completes: the source's transaction, held from
// the copy until the old schema is dropped, must not hold the connection
// the switch needs for the catalog (it would wait for ever, the tenant's
// tables locked meanwhile).
func TestMoveOnAOneConnectionPool(t *testing.T) {
	t.Parallel()
	moveOnAPoolOf(t, 1)
}

// moveOnAPoolOf moves a tenant from "main", whose pool (the catalog's and
// the schemas') has conns connections, to a second server, within 20 s.
func moveOnAPoolOf(t *testing.T, conns int32) {
	ctx := t.Context()
	pool, err := schema.NewPool(ctx, testenv.Postgres(t), schema.PoolOptions{MaxConns: conns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := storage.MigrateCatalog(ctx, pool, nil); err != nil {
		t.Fatal(err)
	}
	docs, err := storage.NewFS(filepath.Join(t.TempDir(), "documents"))
	if err != nil {
		t.Fatal(err)
	}
	catalog := storage.NewPostgres(pool)
	server := testenv.StartPostgres(t)
	urls := map[string]string{"second": server.CreateDatabase(t)}
	pools := placement.New(placement.Options{MainPool: pool, URLs: urls, Catalog: catalog, MaxConns: conns})
	t.Cleanup(func() { _ = pools.Close() })
	if err := pools.Register(ctx); err != nil {
		t.Fatal(err)
	}
	d, enq, inspector := fairOn(t, catalog)
	svc := tenancy.New(tenancy.Config{Catalog: catalog, Enqueuer: enq, Documents: docs, SchemaPool: pool,
		Pools: pools, Dispatcher: d, Plans: fair.DefaultPlans()})
	b := &twoServers{fairBundle: &fairBundle{bundle: &bundle{ctx: ctx, catalog: catalog, docs: docs, inspector: inspector, pool: pool, svc: svc}, d: d, enq: enq}, pools: pools}
	acme := b.provision(t, "acme", "main")
	mctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	m, err := svc.Move(mctx, acme.ID, "second", "test", tenancy.MoveOptions{Grace: time.Millisecond})
	if err != nil {
		t.Fatalf("Move on a pool of %d: %v (acquired %d)", conns, err, pool.Stat().AcquiredConns())
	}
	if !m.OldSchemaDropped || m.Tenant.DatabaseName() != "second" {
		t.Errorf("Move = %+v", m)
	}
}
