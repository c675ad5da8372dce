package worker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestDatabaseBreakerCountsEachTaskHeldByASharedLookUp: with "main"'s
// breaker open, several tasks of one tenant the tenant cache does not know
// wait on one shared load (storage.Cache loads a key once for all its
// callers), which the load gate holds: each task counts once in
// tenantworker_database_held_tasks_total{database="main"}, not the load
// once. A task DatabaseGate holds (a tenant on "main" the cache answers)
// counts once too, not again in DatabaseBreaker.
func TestDatabaseBreakerCountsEachTaskHeldByASharedLookUp(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	mainSrv := testenv.StartPostgres(t)
	mainURL := mainSrv.CreateDatabase(t)
	catalogPool, err := schema.NewPool(ctx, mainURL, schema.PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(catalogPool.Close)
	if err := storage.MigrateCatalog(ctx, catalogPool, nil); err != nil {
		t.Fatal(err)
	}
	catalog := storage.NewPostgres(catalogPool)
	warm, cold := tenantOn(t, catalog, "held-warm", tenantctx.DefaultDatabase), tenantOn(t, catalog, "held-cold", tenantctx.DefaultDatabase)
	cache := storage.NewCache(catalog, nil, storage.CacheOptions{LocalTTL: time.Hour})
	t.Cleanup(func() { _ = cache.Close() })
	mainPool, err := schema.NewPool(ctx, mainURL, schema.PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mainPool.Close)
	reg := placement.New(placement.Options{MainPool: mainPool, RefreshInterval: -1})
	t.Cleanup(func() { _ = reg.Close() })

	// While block is set, a probe of "main" says so on probing and waits
	// for release: the shared load that runs it stays open while the
	// other tasks join it.
	var block atomic.Bool
	probing, release := make(chan struct{}, 1), make(chan struct{})
	probe := func(ctx context.Context, name string) error {
		if block.Load() && name == tenantctx.DefaultDatabase {
			select {
			case probing <- struct{}{}:
			default:
			}
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return reg.Ping(ctx, name)
	}
	metrics := prometheus.NewRegistry()
	breakers, err := worker.NewDatabaseBreakers(worker.BreakerOptions{
		Probe: probe, Locate: breakerLocate(reg),
		// ProbeMax keeps the background prober away; ProbeTimeout above
		// the cache's load bound, which ends the blocked probe otherwise.
		ProbeMin: 10 * time.Millisecond, ProbeMax: time.Minute, ProbeTimeout: time.Minute,
		Logger: slog.New(slog.DiscardHandler), Registerer: metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	closeBreakers(t, breakers)
	mux := worker.MuxOf(worker.MuxOptions{Logger: slog.New(slog.DiscardHandler), Catalog: cache, Breakers: breakers}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: selectOnTenantDatabase(reg),
	})
	run := func(tn tenantctx.Tenant) error {
		return mux.ProcessTask(context.Background(), newTask(t, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1}))
	}
	heldTotal := func() float64 {
		return testutil.ToFloat64(gatheredGauge(t, metrics, "tenantworker_database_held_tasks_total", tenantctx.DefaultDatabase))
	}
	if err := run(warm); err != nil { // its look-up cached
		t.Fatalf("task with main up: %v", err)
	}

	catalogPool.Reset()
	mainSrv.Stop(t)
	t.Cleanup(func() { mainSrv.Start(t) })
	if err := run(cold); !errors.Is(err, worker.ErrDatabaseUnavailable) || errors.Is(err, worker.ErrDatabaseDown) {
		t.Fatalf("first look-up with main stopped: %v; want ErrDatabaseUnavailable from its dial", err)
	}
	if !breakers.Down(tenantctx.DefaultDatabase) {
		t.Fatal("main not down after a look-up found it unreachable")
	}
	time.Sleep(20 * time.Millisecond) // main's first probe due

	// The first task's look-up probes main (blocked); the others join
	// its load.
	block.Store(true)
	const n = 8
	errs := make([]error, n)
	var started, done sync.WaitGroup
	started.Add(1)
	done.Go(func() { started.Done(); errs[0] = run(cold) })
	select {
	case <-probing:
	case <-time.After(10 * time.Second):
		t.Fatal("the look-up of the cold tenant did not probe main")
	}
	for i := 1; i < n; i++ {
		started.Add(1)
		done.Go(func() { started.Done(); errs[i] = run(cold) })
	}
	started.Wait()
	time.Sleep(100 * time.Millisecond) // they reach the shared load
	close(release)
	done.Wait()
	for i, err := range errs {
		if !errors.Is(err, worker.ErrDatabaseDown) || worker.IsFailure(err) {
			t.Fatalf("task %d of the cold tenant, main down: %v; want held", i, err)
		}
	}
	if v := heldTotal(); v != n {
		t.Errorf("%d tasks held by the look-up they shared: tenantworker_database_held_tasks_total{database=main} = %v, want %d (one per task)", n, v, n)
	}

	// A tenant on main that the cache answers: DatabaseGate holds and
	// counts it, DatabaseBreaker does not count it again.
	before := heldTotal()
	const m = 5
	for range m {
		if err := run(warm); !errors.Is(err, worker.ErrDatabaseDown) {
			t.Fatalf("task of the cached tenant on main, main down: %v; want held", err)
		}
	}
	if v := heldTotal() - before; v != m {
		t.Errorf("%d tasks held by DatabaseGate: held_tasks_total{database=main} grew by %v, want %d", m, v, m)
	}
}

// TestDatabaseBreakerResolvesCatalogDatabaseFromTheListReadLast: a tenant
// database registered in the catalog (`enqueue db add`, not
// TENANT_DATABASES) whose pool the worker has not opened is resolved from
// the catalog on "main" (placement.Registry.resolve). With "main"'s
// breaker open, a database the registry saw listed before (its list read
// when it opened another database's pool) resolves from that list without
// "main": its tenant's task runs. One registered after that read is held
// (ErrDatabaseDown, counted once per task) without dialing "main". Once
// "main" is back it runs. Before, each such task dialed "main" and met
// ErrDatabaseUnavailable.
func TestDatabaseBreakerResolvesCatalogDatabaseFromTheListReadLast(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	mainSrv, xSrv := testenv.StartPostgres(t), testenv.StartPostgres(t)
	mainURL := mainSrv.CreateDatabase(t)
	xURL, yURL, zURL := xSrv.CreateDatabase(t), xSrv.CreateDatabase(t), xSrv.CreateDatabase(t)
	// The catalog's pool counts its dials; the probes of main go through
	// a pool of their own.
	var catalogDials atomic.Int64
	catalogPool := countedPool(t, mainURL, &catalogDials)
	catalog := catalogRegisteringX(t, catalogPool, xURL)
	if _, err := catalog.AddDatabase(ctx, "y", yURL); err != nil {
		t.Fatal(err)
	}
	onX, onY := tenantOn(t, catalog, "list-x", "x"), tenantOn(t, catalog, "list-y", "y")
	cold := tenantOn(t, catalog, "list-cold", tenantctx.DefaultDatabase)
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
	mux := worker.MuxOf(worker.MuxOptions{Logger: slog.New(slog.DiscardHandler), Catalog: cache, Breakers: breakers}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: selectOnTenantDatabase(reg),
	})
	run := func(tn tenantctx.Tenant) error {
		return mux.ProcessTask(context.Background(), newTask(t, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1}))
	}
	// x's pool opened: the registry read the catalog's list (x and y).
	if err := run(onX); err != nil {
		t.Fatalf("task on x with main up: %v", err)
	}
	// z registered after that read (another process's `enqueue db add`).
	if _, err := catalog.AddDatabase(ctx, "z", zURL); err != nil {
		t.Fatal(err)
	}
	onZ := tenantOn(t, catalog, "list-z", "z")
	for _, tn := range []tenantctx.Tenant{onY, onZ} { // the tenant cache answers their look-ups
		if _, err := cache.TenantByID(ctx, tn.ID); err != nil {
			t.Fatal(err)
		}
	}

	catalogPool.Reset()
	mainSrv.Stop(t)
	t.Cleanup(func() { mainSrv.Start(t) })
	if err := run(cold); !errors.Is(err, worker.ErrDatabaseUnavailable) || errors.Is(err, worker.ErrDatabaseDown) {
		t.Fatalf("first look-up with main stopped: %v; want ErrDatabaseUnavailable from its dial", err)
	}
	if !breakers.Down(tenantctx.DefaultDatabase) {
		t.Fatal("main not down after a look-up found it unreachable")
	}
	catalogDials.Store(0)
	before := testutil.ToFloat64(gatheredGauge(t, metrics, "tenantworker_database_held_tasks_total", tenantctx.DefaultDatabase))

	if err := run(onY); err != nil {
		t.Errorf("task of a tenant on y (listed when the registry last read the catalog), main down: %v; want it run", err)
	}
	const n = 10
	held := 0
	for range n {
		err := run(onZ)
		if worker.IsFailure(err) {
			t.Fatalf("task of a tenant on z (never listed here), main down: %v; want held, not a failure", err)
		}
		if errors.Is(err, worker.ErrDatabaseDown) {
			held++
		}
		time.Sleep(5 * time.Millisecond)
	}
	if d := catalogDials.Load(); d != 0 || held != n {
		t.Errorf("%d tasks on z with main's breaker open: %d held, %d dials of main's catalog; want all held, none dialing", n, held, d)
	}
	if v := testutil.ToFloat64(gatheredGauge(t, metrics, "tenantworker_database_held_tasks_total", tenantctx.DefaultDatabase)) - before; v != n {
		t.Errorf("held_tasks_total{database=main} grew by %v for %d held tasks on z, want %d", v, n, n)
	}
	if breakers.Down("z") || breakers.Down("y") {
		t.Errorf("down: y %t, z %t; want neither (main is)", breakers.Down("y"), breakers.Down("z"))
	}

	mainSrv.Start(t)
	testenv.WaitFor(t, 30*time.Second, "the task on z runs once main is back", func() bool {
		err := run(onZ)
		if err != nil && worker.IsFailure(err) {
			t.Fatalf("task on z after main's restart failed: %v", err)
		}
		return err == nil
	})
}

// TestDatabaseBreakerProbeHeldByTheLoadGateStaysDown: a probe that a
// breaker's hold ended (ErrDatabaseDown: placement.Registry.Ping of a
// tenant database whose URL it had to read from the catalog on "main",
// held down) did not reach its database: the breaker stays open and the
// task is held, rather than closed as by a server's answer and the task
// run against a database not known to be back.
func TestDatabaseBreakerProbeHeldByTheLoadGateStaysDown(t *testing.T) {
	t.Parallel()
	var probes atomic.Int64
	b, err := worker.NewDatabaseBreakers(worker.BreakerOptions{
		Probe: func(context.Context, string) error {
			probes.Add(1)
			return fmt.Errorf("resolve tenant database x: %w", worker.ErrDatabaseDown)
		},
		ProbeMin: time.Millisecond, ProbeMax: time.Minute,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	closeBreakers(t, b)
	catalog := memstore.New()
	tn := addTenant(t, catalog, "probe-held", tenantctx.StatusActive)
	var ran atomic.Int64
	mux := worker.MuxOf(worker.MuxOptions{Logger: slog.New(slog.DiscardHandler), Catalog: catalog, Breakers: b}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(context.Context, tasks.InvoicePDF) error {
			if ran.Add(1) == 1 {
				return &pgconn.PgError{Severity: "FATAL", Code: "57P03", Message: "the database system is starting up"}
			}
			return nil
		}),
	})
	run := func() error {
		return mux.ProcessTask(context.Background(), newTask(t, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1}))
	}
	if err := run(); !errors.Is(err, worker.ErrDatabaseUnavailable) {
		t.Fatalf("first attempt: %v; want ErrDatabaseUnavailable", err)
	}
	for range 5 {
		time.Sleep(5 * time.Millisecond) // a probe due
		if err := run(); !errors.Is(err, worker.ErrDatabaseDown) {
			t.Fatalf("attempt after a probe held by the load gate: %v; want held", err)
		}
	}
	if !b.Down(tenantctx.DefaultDatabase) || probes.Load() == 0 || ran.Load() != 1 {
		t.Errorf("after %d held probes: down %t, handler ran %d times; want down, run once", probes.Load(), b.Down(tenantctx.DefaultDatabase), ran.Load())
	}
}
