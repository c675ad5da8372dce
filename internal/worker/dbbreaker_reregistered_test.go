package worker_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/schema"
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
	cache := storage.NewCache(catalog, nil, storage.CacheOptions{LocalTTL: time.Hour})
	t.Cleanup(func() { _ = cache.Close() })
	mainPool, err := schema.NewPool(ctx, mainURL, schema.PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mainPool.Close)
	reg := placement.New(placement.Options{MainPool: mainPool, Catalog: cache, MaxConns: 2, RefreshInterval: -1})
	t.Cleanup(func() { _ = reg.Close() })
	metrics := prometheus.NewRegistry()
	breakers, err := worker.NewDatabaseBreakers(worker.BreakerOptions{
		Probe: breakerProbe(reg), Locate: breakerLocate(reg),
		ProbeMin: 20 * time.Millisecond, ProbeMax: 100 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler), Registerer: metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	closeBreakers(t, breakers)
	// The handler records the database each tenant's unit of work reached.
	var mu sync.Mutex
	reached := map[string]string{}
	mux := worker.MuxOf(worker.MuxOptions{Logger: slog.New(slog.DiscardHandler), Catalog: cache, Breakers: breakers}, map[string]asynq.Handler{
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
	run := func(tn tenantctx.Tenant) error {
		return mux.ProcessTask(context.Background(), newTask(t, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1}))
	}
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

	catalogPool.Reset()
	mainSrv.Stop(t)
	t.Cleanup(func() { mainSrv.Start(t) })
	if err := run(cold); !errors.Is(err, worker.ErrDatabaseUnavailable) || errors.Is(err, worker.ErrDatabaseDown) {
		t.Fatalf("first look-up with main stopped: %v; want ErrDatabaseUnavailable from its dial", err)
	}
	catalogDials.Store(0)
	before := testutil.ToFloat64(gatheredGauge(t, metrics, "tenantworker_database_held_tasks_total", tenantctx.DefaultDatabase))
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
	if v := testutil.ToFloat64(gatheredGauge(t, metrics, "tenantworker_database_held_tasks_total", tenantctx.DefaultDatabase)) - before; v != n {
		t.Errorf("held_tasks_total{database=main} grew by %v for %d held tasks, want %d", v, n, n)
	}

	mainSrv.Start(t)
	testenv.WaitFor(t, 30*time.Second, "the task on y runs once main is back", func() bool {
		err := run(onY)
		if err != nil && worker.IsFailure(err) {
			t.Fatalf("task on y after main's restart failed: %v", err)
		}
		return err == nil
	})
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
