package worker_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestDatabaseBreakerHoldsATenantOfADatabaseRegisteredAgainSinceTheListRead:
// with "main"'s breaker open, a tenant placed on a database that was
// removed and registered again (on another URL) after the worker last read
// the catalog's database list is held (ErrDatabaseDown, counted once, no
// dial of "main"), not run on the URL of the registration the list names:
// the list read last does not know the new one. Once "main" is back its
// task runs on the new registration's database. Before, it ran on the old
// registration's database (another tenant's server, or a schema that is
// not there: a counted failure).
func TestDatabaseBreakerHoldsATenantOfADatabaseRegisteredAgainSinceTheListRead(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	mainSrv, xSrv := testenv.StartPostgres(t), testenv.StartPostgres(t)
	mainURL := mainSrv.CreateDatabase(t)
	xURL, yOldURL, yNewURL := xSrv.CreateDatabase(t), xSrv.CreateDatabase(t), xSrv.CreateDatabase(t)
	var catalogDials atomic.Int64
	catalogPool := countedPool(t, mainURL, &catalogDials)
	catalog := catalogRegisteringX(t, catalogPool, xURL)
	if _, err := catalog.AddDatabase(ctx, "y", yOldURL); err != nil {
		t.Fatal(err)
	}
	onX := tenantOn(t, catalog, "again-x", "x")
	cold := tenantOn(t, catalog, "again-cold", tenantctx.DefaultDatabase)
	cache := newTenantCache(t, catalog, storage.CacheOptions{LocalTTL: time.Hour})
	reg := newRegistry(t, placement.Options{MainPool: openPool(t, mainURL, 2), Catalog: cache, MaxConns: 2, RefreshInterval: -1})
	metrics := prometheus.NewRegistry()
	// The handler records the database each tenant's unit of work reached.
	var mu sync.Mutex
	reached := map[string]string{}
	c := newBreakerChain(t, worker.BreakerOptions{
		Probe: breakerProbe(reg), Locate: breakerLocate(reg),
		ProbeMin: 20 * time.Millisecond, ProbeMax: 100 * time.Millisecond,
		Registerer: metrics,
	}, cache, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(ctx context.Context, _ tasks.InvoicePDF) error {
			tenant, _ := tenantctx.FromContext(ctx)
			pool, err := reg.ForTenant(ctx, tenant)
			if err != nil {
				return err
			}
			var db string
			if err := pool.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
				return err
			}
			mu.Lock()
			reached[tenant.ID] = db
			mu.Unlock()
			return nil
		}),
	})
	run := c.render
	reachedBy := func(id string) string {
		mu.Lock()
		defer mu.Unlock()
		return reached[id]
	}
	// x's pool opened: the registry read the catalog's list (x, and y on
	// yOldURL).
	if err := run(onX); err != nil {
		t.Fatalf("task on x with main up: %v", err)
	}
	// y removed and registered again on another database (another
	// process's `enqueue db remove` and `db add`), a tenant placed there;
	// the tenant cache answers its look-up.
	if err := catalog.RemoveDatabase(ctx, "y"); err != nil {
		t.Fatal(err)
	}
	if _, err := catalog.AddDatabase(ctx, "y", yNewURL); err != nil {
		t.Fatal(err)
	}
	onY := tenantOn(t, catalog, "again-y", "y")
	if _, err := cache.TenantByID(ctx, onY.ID); err != nil {
		t.Fatal(err)
	}
	oldDB, newDB := databaseOf(t, yOldURL), databaseOf(t, yNewURL)

	stopMainUnderALookUp(t, mainSrv, catalogPool, func() error { return run(cold) })
	catalogDials.Store(0)
	before := heldTotal(t, metrics, tenantctx.DefaultDatabase)
	const n = 5
	for i := range n {
		err := run(onY)
		if worker.IsFailure(err) || !errors.Is(err, worker.ErrDatabaseDown) {
			t.Fatalf("task %d of a tenant on y registered again since the list was read, main down: %v (reached %q; the list's registration is on %q); want held",
				i, err, reachedBy(onY.ID), oldDB)
		}
	}
	if got := reachedBy(onY.ID); got != "" {
		t.Errorf("the tenant on y's new registration reached database %q while main was down; want none", got)
	}
	if d := catalogDials.Load(); d != 0 {
		t.Errorf("%d dials of main's catalog for tasks held; want 0", d)
	}
	if v := heldTotal(t, metrics, tenantctx.DefaultDatabase) - before; v != n {
		t.Errorf("held_tasks_total{database=main} grew by %v for %d held tasks, want %d", v, n, n)
	}

	mainSrv.Start(t)
	waitRuns(t, "the task on y runs once main is back", func() error { return run(onY) })
	if got := reachedBy(onY.ID); got != newDB {
		t.Errorf("the tenant on y's new registration reached database %q once main was back; want %q", got, newDB)
	}
}

// databaseOf is the database name of a PostgreSQL URL.
func databaseOf(t *testing.T, url string) string {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.ConnConfig.Database
}
