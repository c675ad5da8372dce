package worker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
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
	catalogPool := openPool(t, mainURL, 2)
	if err := storage.MigrateCatalog(ctx, catalogPool, nil); err != nil {
		t.Fatal(err)
	}
	catalog := storage.NewPostgres(catalogPool)
	warm, cold := tenantOn(t, catalog, "held-warm", tenantctx.DefaultDatabase), tenantOn(t, catalog, "held-cold", tenantctx.DefaultDatabase)
	cache := newTenantCache(t, catalog, storage.CacheOptions{LocalTTL: time.Hour})
	reg := newRegistry(t, placement.Options{MainPool: openPool(t, mainURL, 2), RefreshInterval: -1})

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
	c := newBreakerChain(t, worker.BreakerOptions{
		Probe: probe, Locate: breakerLocate(reg),
		// ProbeMax keeps the background prober away; ProbeTimeout above
		// the cache's load bound, which ends the blocked probe otherwise.
		ProbeMin: 10 * time.Millisecond, ProbeMax: time.Minute, ProbeTimeout: time.Minute,
		Registerer: metrics,
	}, cache, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: selectOnTenantDatabase(reg),
	})
	breakers, run := c.breakers, c.render
	if err := run(warm); err != nil { // its look-up cached
		t.Fatalf("task with main up: %v", err)
	}

	stopMainUnderALookUp(t, mainSrv, catalogPool, func() error { return run(cold) })
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
	if v := heldTotal(t, metrics, tenantctx.DefaultDatabase); v != n {
		t.Errorf("%d tasks held by the look-up they shared: tenantworker_database_held_tasks_total{database=main} = %v, want %d (one per task)", n, v, n)
	}

	// A tenant on main that the cache answers: DatabaseGate holds and
	// counts it, DatabaseBreaker does not count it again.
	before := heldTotal(t, metrics, tenantctx.DefaultDatabase)
	const m = 5
	for range m {
		if err := run(warm); !errors.Is(err, worker.ErrDatabaseDown) {
			t.Fatalf("task of the cached tenant on main, main down: %v; want held", err)
		}
	}
	if v := heldTotal(t, metrics, tenantctx.DefaultDatabase) - before; v != m {
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
	cache := newTenantCache(t, catalog, storage.CacheOptions{LocalTTL: time.Hour})
	reg := newRegistry(t, placement.Options{MainPool: openPool(t, mainURL, 2), Catalog: cache, MaxConns: 2, RefreshInterval: -1})
	metrics := prometheus.NewRegistry()
	c := newBreakerChain(t, worker.BreakerOptions{
		Probe: breakerProbe(reg), Locate: breakerLocate(reg),
		ProbeMin: 20 * time.Millisecond, ProbeMax: 100 * time.Millisecond,
		Registerer: metrics,
	}, cache, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: selectOnTenantDatabase(reg),
	})
	breakers, run := c.breakers, c.render
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

	stopMainUnderALookUp(t, mainSrv, catalogPool, func() error { return run(cold) })
	if !breakers.Down(tenantctx.DefaultDatabase) {
		t.Fatal("main not down after a look-up found it unreachable")
	}
	catalogDials.Store(0)
	before := heldTotal(t, metrics, tenantctx.DefaultDatabase)

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
	if v := heldTotal(t, metrics, tenantctx.DefaultDatabase) - before; v != n {
		t.Errorf("held_tasks_total{database=main} grew by %v for %d held tasks on z, want %d", v, n, n)
	}
	if breakers.Down("z") || breakers.Down("y") {
		t.Errorf("down: y %t, z %t; want neither (main is)", breakers.Down("y"), breakers.Down("z"))
	}

	mainSrv.Start(t)
	waitRuns(t, "the task on z runs once main is back", func() error { return run(onZ) })
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
	catalog := memstore.New()
	tn := addTenant(t, catalog, "probe-held", tenantctx.StatusActive)
	var ran atomic.Int64
	c := newBreakerChain(t, worker.BreakerOptions{
		Probe: func(context.Context, string) error {
			probes.Add(1)
			return fmt.Errorf("resolve tenant database x: %w", worker.ErrDatabaseDown)
		},
		ProbeMin: time.Millisecond, ProbeMax: time.Minute,
	}, catalog, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: failsFirst(&ran),
	})
	b := c.breakers
	run := func() error { return c.render(tn) }
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
