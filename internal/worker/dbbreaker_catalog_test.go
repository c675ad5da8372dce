package worker_test

import (
	"context"
	"errors"
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
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestDatabaseBreakerHoldsCacheMissLookUpWithoutDialing: while "main"'s
// breaker is open, a tenant look-up that the tenant cache (storage.Cache
// over the PostgreSQL catalog) cannot answer is held at once
// (ErrDatabaseDown, not a failure) without dialing "main", while a tenant
// whose look-up the cache answers runs on its own database; the look-up
// that arrives when a probe is due probes (a connection of its own), and
// once "main" is back the held tenant's task runs and the breaker closes.
func TestDatabaseBreakerHoldsCacheMissLookUpWithoutDialing(t *testing.T) {
	t.Parallel()
	mainSrv, xSrv := testenv.StartPostgres(t), testenv.StartPostgres(t)
	mainURL, xURL := mainSrv.CreateDatabase(t), xSrv.CreateDatabase(t)
	// The catalog's pool counts its dials; the probes and the tenants'
	// units of work go through a registry over a pool of their own.
	var catalogDials atomic.Int64
	catalogPool := countedPool(t, mainURL, &catalogDials)
	catalog := catalogRegisteringX(t, catalogPool, xURL)
	warm, cold := tenantOn(t, catalog, "lookup-warm", "x"), tenantOn(t, catalog, "lookup-cold", "x")
	cache := newTenantCache(t, catalog, storage.CacheOptions{LocalTTL: time.Hour})

	mainPool := openPool(t, mainURL, 2)
	reg := newRegistry(t, placement.Options{MainPool: mainPool, URLs: map[string]string{"x": xURL}, MaxConns: 2, RefreshInterval: -1})
	metrics := prometheus.NewRegistry()
	c := newBreakerChain(t, worker.BreakerOptions{
		Probe: breakerProbe(reg), Locate: breakerLocate(reg),
		ProbeMin: 20 * time.Millisecond, ProbeMax: 100 * time.Millisecond,
		Registerer: metrics,
	}, cache, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: selectOnTenantDatabase(reg),
	})
	breakers, run := c.breakers, c.render
	if err := run(warm); err != nil { // its look-up cached
		t.Fatalf("task with both databases up: %v", err)
	}

	// The first look-up that misses dials main, finds it down and opens
	// its breaker.
	stopMainUnderALookUp(t, mainSrv, catalogPool, func() error { return run(cold) })
	if !breakers.Down(tenantctx.DefaultDatabase) || breakers.Down("x") {
		t.Fatalf("down: main %t, x %t; want main only", breakers.Down(tenantctx.DefaultDatabase), breakers.Down("x"))
	}
	catalogDials.Store(0)
	const n = 30
	held, served := 0, 0
	for range n {
		err := run(cold)
		if worker.IsFailure(err) {
			t.Fatalf("look-up of a tenant the cache does not know, main down: %v; want held, not a failure", err)
		}
		if errors.Is(err, worker.ErrDatabaseDown) {
			held++
		}
		if err := run(warm); err == nil {
			served++
		}
		time.Sleep(5 * time.Millisecond)
	}
	if d := catalogDials.Load(); d != 0 || held != n {
		t.Errorf("%d look-ups the cache cannot answer with main's breaker open: %d held, %d dials of main; want all held, none dialing", n, held, d)
	}
	if served != n {
		t.Errorf("%d of %d tasks of the tenant the cache answers ran with main down; want all", served, n)
	}
	if v := heldTotal(t, metrics, tenantctx.DefaultDatabase); v < n-10 {
		t.Errorf("tenantworker_database_held_tasks_total{database=main} = %v, want >= %d", v, n-10)
	}

	mainSrv.Start(t)
	waitRuns(t, "the cold tenant's task runs once main is back", func() error { return run(cold) })
	if breakers.Down(tenantctx.DefaultDatabase) {
		t.Error("main still down after a look-up through it succeeded")
	}
}

// catalogRegisteringX migrates the catalog on pool ("main") and registers
// the tenant database "x" at xURL in it.
func catalogRegisteringX(t *testing.T, pool *pgxpool.Pool, xURL string) *storage.Postgres {
	t.Helper()
	if err := storage.MigrateCatalog(t.Context(), pool, nil); err != nil {
		t.Fatal(err)
	}
	catalog := storage.NewPostgres(pool)
	if _, err := catalog.AddDatabase(t.Context(), "x", xURL); err != nil {
		t.Fatal(err)
	}
	return catalog
}

// catalogWithX returns an in-memory catalog that registers a tenant
// database "x" (never dialed: the tests' handlers stand for its units of
// work).
func catalogWithX(t *testing.T) *memstore.Catalog {
	t.Helper()
	backend := memstore.New()
	if _, err := backend.AddDatabase(t.Context(), "x", "postgres://x.invalid/x"); err != nil {
		t.Fatal(err)
	}
	return backend
}

// tenantOn creates an active tenant slug on database db in catalog.
func tenantOn(t *testing.T, catalog storage.Catalog, slug, db string) tenantctx.Tenant {
	t.Helper()
	tn, err := tenantctx.New(slug, slug, "pro")
	if err != nil {
		t.Fatal(err)
	}
	tn.Database = db
	if tn, err = catalog.CreateTenant(t.Context(), tn); err != nil {
		t.Fatal(err)
	}
	if tn, err = catalog.SetStatus(t.Context(), tn.ID, tenantctx.StatusActive); err != nil {
		t.Fatal(err)
	}
	return tn
}

// TestDatabaseBreakerHoldsCatalogTasksWhileMainIsDown: a task whose type
// needs the catalog (tasks.Spec.NeedsCatalog: tenant:migrate of a tenant
// on another database, the retry of a tenant:destroy whose tenant the
// catalog no longer has) is held while "main"'s breaker is open, its
// handler not run, although its tenant's database is up and its look-up
// answered from the cache; the same tenant's render runs meanwhile; once
// "main" is back the migration runs.
func TestDatabaseBreakerHoldsCatalogTasksWhileMainIsDown(t *testing.T) {
	t.Parallel()
	e := newBreakerEnv(t)
	gone, err := tenantctx.New("breaker-gone", "breaker-gone", "pro") // never in the catalog
	if err != nil {
		t.Fatal(err)
	}
	migrate := tasks.TenantMigrate{TenantID: e.onSec.ID}
	if err := e.run(migrate); err != nil || e.catalogRuns.Load() != 1 {
		t.Fatalf("migrate with both databases up: %v, %d runs; want it run", err, e.catalogRuns.Load())
	}
	stopServer(t, e.main)
	if err := e.run(tasks.SweepOverdue{Tick: 1700000000}); !errors.Is(err, worker.ErrDatabaseUnavailable) || !e.breakers.Down(tenantctx.DefaultDatabase) {
		t.Fatalf("sweep with main stopped: %v, main down %t; want ErrDatabaseUnavailable and main's breaker open", err, e.breakers.Down(tenantctx.DefaultDatabase))
	}
	e.catalogRuns.Store(0)
	const n = 20
	var notHeld []error
	var renderErr error
	rendered := 0
	for range n {
		for _, p := range []tasks.Payload{migrate, tasks.TenantDestroy{TenantID: gone.ID}} {
			err := e.run(p)
			if worker.IsFailure(err) {
				t.Fatalf("%s with main down: %v; want held, not a failure", p.TypeName(), err)
			}
			if !errors.Is(err, worker.ErrDatabaseDown) && len(notHeld) < 3 {
				notHeld = append(notHeld, err)
			}
		}
		if err := e.run(tasks.InvoicePDF{TenantID: e.onSec.ID, InvoiceID: 1}); err != nil {
			renderErr = err
		} else {
			rendered++
		}
		time.Sleep(5 * time.Millisecond)
	}
	if rendered != n {
		t.Errorf("%d of %d renders of the tenant on second ran with main down (last error: %v); want all", rendered, n, renderErr)
	}
	if runs := e.catalogRuns.Load(); runs != 0 || len(notHeld) > 0 {
		t.Errorf("tasks that need the catalog, main down: their handlers ran %d times for %d tasks, not held: %v; want all held, none run",
			runs, 2*n, notHeld)
	}
	if e.breakers.Down("second") {
		t.Error("second's breaker open: the held tasks' own database was up")
	}
	e.main.Start(t)
	waitRuns(t, "the migration runs once main is back", func() error { return e.run(migrate) })
	if e.breakers.Down(tenantctx.DefaultDatabase) || e.catalogRuns.Load() < 1 {
		t.Errorf("main back: down %t, %d handler runs; want closed and the migration run", e.breakers.Down(tenantctx.DefaultDatabase), e.catalogRuns.Load())
	}
}

// TestDatabaseBreakerCacheMissLookUpProbesWhenDue: with "main"'s breaker
// open, a look-up the tenant cache cannot answer follows the breaker's
// probing rules: before a probe is due it is held without a probe and the
// catalog is not asked; the one that arrives when a probe is due probes,
// and is held when the probe fails (the backoff doubled); once a probe
// reaches "main" that look-up is answered from the catalog and its task
// runs.
func TestDatabaseBreakerCacheMissLookUpProbesWhenDue(t *testing.T) {
	t.Parallel()
	var probes atomic.Int64
	var up atomic.Bool
	unreachable := startingUp()
	// The tenants live on database x (never dialed here: the handler
	// stands for their units of work), the catalog on main.
	backend := catalogWithX(t)
	warm, cold := tenantOn(t, backend, "due-warm", "x"), tenantOn(t, backend, "due-cold", "x")
	cache := newTenantCache(t, backend, storage.CacheOptions{LocalTTL: time.Hour})
	var ran atomic.Int64
	c := newBreakerChain(t, worker.BreakerOptions{
		Probe: func(context.Context, string) error {
			probes.Add(1)
			if up.Load() {
				return nil
			}
			return unreachable
		},
		// The breakers' own probe (due ProbeMax after a task's) never
		// comes within the test. A second before the first probe, two
		// after a failed one: a look-up the test makes "before a probe is
		// due" comes well before it, however slow the machine.
		ProbeMin: time.Second, ProbeMax: time.Hour,
	}, cache, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(context.Context, tasks.InvoicePDF) error {
			ran.Add(1)
			return nil
		}),
		// The attempt that finds main down.
		tasks.TypeSweepOverdue: worker.Handle(func(context.Context, tasks.SweepOverdue) error { return unreachable }),
	})
	b := c.breakers
	run := func(tn tenantctx.Tenant, invoice int64) error {
		return c.run(tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: invoice})
	}
	if err := run(warm, 1); err != nil { // its look-up cached
		t.Fatalf("task with main up: %v", err)
	}
	if err := c.run(tasks.SweepOverdue{Tick: 1}); !errors.Is(err, worker.ErrDatabaseUnavailable) ||
		!b.Down(tenantctx.DefaultDatabase) {
		t.Fatalf("sweep that finds main down: %v, main down %t; want ErrDatabaseUnavailable and main's breaker open", err, b.Down(tenantctx.DefaultDatabase))
	}
	misses := cache.Stats().Misses
	if err := run(cold, 2); !errors.Is(err, worker.ErrDatabaseDown) || probes.Load() != 0 || cache.Stats().Misses != misses {
		t.Fatalf("look-up before a probe is due: %v, %d probes, %d catalog queries; want held without a probe or a query",
			err, probes.Load(), cache.Stats().Misses-misses)
	}
	time.Sleep(1100 * time.Millisecond) // the first probe is due
	if err := run(cold, 2); !errors.Is(err, worker.ErrDatabaseDown) || probes.Load() != 1 || cache.Stats().Misses != misses {
		t.Fatalf("look-up when a probe is due, main still down: %v, %d probes, %d catalog queries; want it to probe once, held",
			err, probes.Load(), cache.Stats().Misses-misses)
	}
	if err := run(cold, 2); !errors.Is(err, worker.ErrDatabaseDown) || probes.Load() != 1 {
		t.Fatalf("look-up right after a failed probe: %v, %d probes; want held without a probe (2 s backoff)", err, probes.Load())
	}
	if err := run(warm, 2); err != nil || ran.Load() != 2 {
		t.Fatalf("task of a tenant the cache answers, main down: %v; want it run", err)
	}
	up.Store(true)
	time.Sleep(2100 * time.Millisecond) // the second probe is due
	if err := run(cold, 2); err != nil || probes.Load() != 2 || cache.Stats().Misses != misses+1 || b.Down(tenantctx.DefaultDatabase) {
		t.Fatalf("look-up when a probe is due, main back: %v, %d probes, %d catalog queries, main down %t; want its probe to close the breaker and its task run",
			err, probes.Load(), cache.Stats().Misses-misses, b.Down(tenantctx.DefaultDatabase))
	}
}

// TestDatabaseBreakerCacheMissLookUpProbeOutlastingTheLoadBound: the probe
// a look-up the tenant cache cannot answer runs (main's breaker open, a
// probe due) is bounded by the cache's shared load (CacheOptions.LoadTimeout,
// 10 s by default) as well as by ProbeTimeout (DB_BREAKER_PROBE_TIMEOUT, up
// to 30 s). Against a "main" that does not answer at all, a probe that the
// load's bound cuts short is a probe that timed out: the look-up is held
// (ErrDatabaseDown, a wait that counts no failure) and the next probe is
// backed off, as when ProbeTimeout cuts it. Before, the look-up failed with
// the load's "context deadline exceeded" (a failure counted against the
// task's retries) and the breaker was left with a probe due at once, so
// every later miss probed again.
func TestDatabaseBreakerCacheMissLookUpProbeOutlastingTheLoadBound(t *testing.T) {
	t.Parallel()
	var probes atomic.Int64
	unreachable := startingUp()
	backend := catalogWithX(t)
	cold := tenantOn(t, backend, "bound-cold", "x")
	cache := newTenantCache(t, backend, storage.CacheOptions{LocalTTL: time.Hour, LoadTimeout: 100 * time.Millisecond})
	c := newBreakerChain(t, worker.BreakerOptions{
		// A server that accepts nothing and refuses nothing: the probe
		// ends at its deadline.
		Probe: func(ctx context.Context, _ string) error {
			probes.Add(1)
			<-ctx.Done()
			return ctx.Err()
		},
		// The next probe is due two seconds after one that timed out:
		// the look-up right after it comes well before, however slow the
		// machine.
		ProbeMin: time.Second, ProbeMax: time.Hour, ProbeTimeout: 5 * time.Second,
	}, cache, map[string]asynq.Handler{
		tasks.TypeInvoicePDF:   worker.Handle(func(context.Context, tasks.InvoicePDF) error { return nil }),
		tasks.TypeSweepOverdue: worker.Handle(func(context.Context, tasks.SweepOverdue) error { return unreachable }),
	})
	if err := c.run(tasks.SweepOverdue{Tick: 1}); !errors.Is(err, worker.ErrDatabaseUnavailable) {
		t.Fatalf("sweep that finds main down: %v; want ErrDatabaseUnavailable", err)
	}
	time.Sleep(1100 * time.Millisecond) // the first probe is due
	run := func() error { return c.render(cold) }
	start := time.Now()
	if err := run(); !errors.Is(err, worker.ErrDatabaseDown) || probes.Load() != 1 {
		t.Fatalf("look-up whose probe the cache's load bound cut short: %v, %d probes; want held (ErrDatabaseDown) after one probe", err, probes.Load())
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("look-up took %v; want it bounded by the cache's load bound (100 ms), not ProbeTimeout", d)
	}
	if err := run(); !errors.Is(err, worker.ErrDatabaseDown) || probes.Load() != 1 {
		t.Fatalf("look-up right after a probe that timed out: %v, %d probes; want held without a probe (backed off)", err, probes.Load())
	}
}
