package tenancy_test

import (
	"context"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
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
	pool, catalog, docs := catalogAt(t, testenv.Postgres(t), conns)
	b := servicesOn(t, pool, catalog, docs, map[string]string{"second": testenv.StartPostgres(t).CreateDatabase(t)}, conns)
	acme := b.provision(t, "acme", "main")
	mctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	m, err := b.svc.Move(mctx, acme.ID, "second", "test", tenancy.MoveOptions{Grace: time.Millisecond})
	if err != nil {
		t.Fatalf("Move on a pool of %d: %v (acquired %d)", conns, err, pool.Stat().AcquiredConns())
	}
	if !m.OldSchemaDropped || m.Tenant.DatabaseName() != "second" {
		t.Errorf("Move = %+v", m)
	}
}
