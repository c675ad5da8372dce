package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
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
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestDatabaseBreakerProbesADatabaseWithoutMain: the production probe of a
// tenant database registered in the catalog (`enqueue db add`), as the
// worker wires it, reaches that database without asking the catalog on
// "main": with "main" and the tenant database both stopped, once the
// tenant database is back its tenant's task runs (its look-up answered
// from the tenant cache) while "main" is still down, instead of being held
// until "main" returns.
func TestDatabaseBreakerProbesADatabaseWithoutMain(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	mainSrv, xSrv := testenv.StartPostgres(t), testenv.StartPostgres(t)
	mainPool, err := schema.NewPool(ctx, mainSrv.CreateDatabase(t), schema.PoolOptions{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mainPool.Close)
	xURL := xSrv.CreateDatabase(t)
	onMain := catalogRegisteringX(t, mainPool, xURL)
	reg := placement.New(placement.Options{MainPool: mainPool, Catalog: onMain, MaxConns: 2, RefreshInterval: -1})
	t.Cleanup(func() { _ = reg.Close() })

	// The tenant's look-up, as the worker's tenant cache answers it
	// while "main" is down.
	cache, tn := activeTenantOn(t, "probe-x", "x", xURL)

	breakers, err := worker.NewDatabaseBreakers(worker.BreakerOptions{
		Probe:    breakerProbe(reg),
		ProbeMin: 20 * time.Millisecond, ProbeMax: 100 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	closeBreakers(t, breakers)
	mux := worker.MuxOf(worker.MuxOptions{Logger: slog.New(slog.DiscardHandler), Catalog: cache, Breakers: breakers}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: selectOnTenantDatabase(reg),
	})
	run := func() error {
		return mux.ProcessTask(context.Background(), newTask(t, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1}))
	}
	if err := run(); err != nil {
		t.Fatalf("task with both databases up: %v", err)
	}

	xSrv.Stop(t)
	t.Cleanup(func() { xSrv.Start(t) })
	if err := run(); !errors.Is(err, worker.ErrDatabaseUnavailable) || worker.IsFailure(err) {
		t.Fatalf("task with x stopped: %v; want ErrDatabaseUnavailable", err)
	}
	if !breakers.Down("x") {
		t.Fatal("x not down after an attempt found it unreachable")
	}
	mainSrv.Stop(t)
	t.Cleanup(func() { mainSrv.Start(t) })
	xSrv.Start(t)

	var last error
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if last = run(); last == nil {
			break
		}
		if worker.IsFailure(last) {
			t.Fatalf("task of x with main down: %v; want held or run", last)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if last != nil || breakers.Down("x") {
		t.Fatalf("x back, main down: the task is still held (%v), x down %t; want it run, its probe not asking main", last, breakers.Down("x"))
	}
}

// newTask is p's task.
func newTask(t *testing.T, p tasks.Payload) *asynq.Task {
	t.Helper()
	payload, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return asynq.NewTask(p.TypeName(), payload)
}

// breakerProbe is the worker's probe of the breakers over reg
// (workerapp's wiring: placement.Registry.Ping).
func breakerProbe(reg *placement.Registry) func(context.Context, string) error {
	return reg.Ping
}

// TestDatabaseBreakerProbeThatPanicsIsProbedAgain: a probe that panics
// (Recover turns the panic into the attempt's error) does not leave its
// database "being probed" for ever, every later task held without a
// probe: the next task due probes again, and runs once that probe
// reaches the database.
func TestDatabaseBreakerProbeThatPanicsIsProbedAgain(t *testing.T) {
	t.Parallel()
	var probes atomic.Int64
	var up atomic.Bool
	b, err := worker.NewDatabaseBreakers(worker.BreakerOptions{
		Probe: func(context.Context, string) error {
			if probes.Add(1) == 1 {
				panic("probe bug")
			}
			return nil
		},
		ProbeMin: 5 * time.Millisecond, ProbeMax: 10 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	closeBreakers(t, b)
	catalog := memstore.New()
	tn := addTenant(t, catalog, "probe-panics", tenantctx.StatusActive)
	unreachable := &pgconn.PgError{Severity: "FATAL", Code: "57P03", Message: "the database system is starting up"}
	mux := worker.MuxOf(worker.MuxOptions{Logger: slog.New(slog.DiscardHandler), Catalog: catalog, Breakers: b}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(context.Context, tasks.InvoicePDF) error {
			if !up.Load() {
				return unreachable
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
	up.Store(true)
	testenv.WaitFor(t, 5*time.Second, "the probe that panicked ran", func() bool {
		_ = run()
		return probes.Load() >= 1
	})
	testenv.WaitFor(t, 2*time.Second, "a task runs after the probe that panicked", func() bool { return run() == nil })
	if b.Down(tenantctx.DefaultDatabase) || probes.Load() != 2 {
		t.Errorf("down %t after %d probes; want closed after 2 (the panic, then one that reached it)", b.Down(tenantctx.DefaultDatabase), probes.Load())
	}
}

// TestDatabaseBreakerProbeDoesNotWaitForABusyPool: the probe dials a
// connection of its own instead of taking one of the database's pool. With
// the pool's connections all in use by tasks that run (here its only one,
// TENANT_DB_MAX_CONNS=1) when an attempt met the database starting up
// (57P03) and opened its breaker, a probe through the pool would wait for
// a connection until its timeout, take that for "still down" and keep the
// database's other tasks held (backoff growing to 30 s) although it
// answers; the probe reaches it at once and the next task runs.
func TestDatabaseBreakerProbeDoesNotWaitForABusyPool(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	mainPool, err := schema.NewPool(ctx, testenv.Postgres(t), schema.PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mainPool.Close)
	xURL := testenv.StartPostgres(t).CreateDatabase(t)
	reg := placement.New(placement.Options{MainPool: mainPool, URLs: map[string]string{"x": xURL}, MaxConns: 1, RefreshInterval: -1})
	t.Cleanup(func() { _ = reg.Close() })

	cache, tn := activeTenantOn(t, "busy-x", "x", xURL)
	// A running task's connection: the pool's only one.
	pool, err := reg.ForTenant(ctx, tn)
	if err != nil {
		t.Fatal(err)
	}
	busy, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(busy.Release)

	var probes atomic.Int64
	breakers, err := worker.NewDatabaseBreakers(worker.BreakerOptions{
		Probe: func(ctx context.Context, name string) error {
			probes.Add(1)
			return breakerProbe(reg)(ctx, name)
		},
		ProbeMin: 10 * time.Millisecond, ProbeMax: 20 * time.Millisecond, ProbeTimeout: 300 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	closeBreakers(t, breakers)
	var attempts atomic.Int64
	mux := worker.MuxOf(worker.MuxOptions{Logger: slog.New(slog.DiscardHandler), Catalog: cache, Breakers: breakers}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(context.Context, tasks.InvoicePDF) error {
			if attempts.Add(1) == 1 {
				return &pgconn.PgError{Severity: "FATAL", Code: "57P03", Message: "the database system is starting up"}
			}
			return nil
		}),
	})
	run := func() error {
		return mux.ProcessTask(context.Background(), newTask(t, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1}))
	}
	if err := run(); !errors.Is(err, worker.ErrDatabaseUnavailable) || !breakers.Down("x") {
		t.Fatalf("first attempt: %v, x down %t; want ErrDatabaseUnavailable and x down", err, breakers.Down("x"))
	}
	var last error
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if last = run(); last == nil {
			break
		}
	}
	if last != nil || breakers.Down("x") {
		t.Fatalf("x answers, its pool busy: after %d probes the task is still held (%v); want the probe to reach x", probes.Load(), last)
	}
}

// TestDatabaseBreakerOpensTheDatabaseTheAttemptFailedOn: a task of a
// tenant on database x whose handler could not reach "main" (tenant:migrate
// and tenant:destroy write the catalog there) opens main's breaker, not
// x's: x's tenants go on running, and the warn line names main. The
// attempt's error names the server it dialed (pgconn.ConnectError), which
// the worker's breakers match against main's and the open pools'
// settings (placement.Registry.DatabaseOf).
func TestDatabaseBreakerOpensTheDatabaseTheAttemptFailedOn(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	mainSrv := testenv.StartPostgres(t)
	mainPool, err := schema.NewPool(ctx, mainSrv.CreateDatabase(t), schema.PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mainPool.Close)
	xURL := testenv.StartPostgres(t).CreateDatabase(t)
	reg := placement.New(placement.Options{MainPool: mainPool, URLs: map[string]string{"x": xURL}, MaxConns: 2, RefreshInterval: -1})
	t.Cleanup(func() { _ = reg.Close() })

	cache, tn := activeTenantOn(t, "writes-main", "x", xURL)
	breakers, err := worker.NewDatabaseBreakers(worker.BreakerOptions{
		Probe: breakerProbe(reg), Locate: breakerLocate(reg),
		ProbeMin: 10 * time.Millisecond, ProbeMax: 20 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	closeBreakers(t, breakers)
	// A render runs on the tenant's database; the destroy's handler
	// writes main (the catalog), as tenant:destroy does.
	mux := worker.MuxOf(worker.MuxOptions{Logger: slog.New(slog.DiscardHandler), Catalog: cache, Breakers: breakers}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: selectOnTenantDatabase(reg),
		tasks.TypeTenantMigrate: worker.Handle(func(ctx context.Context, _ tasks.TenantMigrate) error {
			_, err := mainPool.Exec(ctx, "SELECT 1")
			return err
		}),
	})
	run := func(p tasks.Payload) error { return mux.ProcessTask(context.Background(), newTask(t, p)) }
	render := tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1}
	if err := run(render); err != nil {
		t.Fatalf("render with both databases up: %v", err)
	}
	mainPool.Reset() // no connection opened before main stops
	mainSrv.Stop(t)
	t.Cleanup(func() { mainSrv.Start(t) })
	if err := run(tasks.TenantMigrate{TenantID: tn.ID, Target: 1}); !errors.Is(err, worker.ErrDatabaseUnavailable) {
		t.Fatalf("migrate with main stopped: %v; want ErrDatabaseUnavailable", err)
	}
	if breakers.Down("x") || !breakers.Down(tenantctx.DefaultDatabase) {
		t.Fatalf("after an attempt of a tenant on x that could not reach main: x down %t, main down %t; want main only",
			breakers.Down("x"), breakers.Down(tenantctx.DefaultDatabase))
	}
	if err := run(render); err != nil {
		t.Fatalf("render of the tenant on x with main down: %v; want it run", err)
	}
}

// breakerLocate is the worker's Locate of the breakers over reg
// (workerapp's wiring: placement.Registry.DatabaseOf).
func breakerLocate(reg *placement.Registry) func(error) (string, bool) {
	return reg.DatabaseOf
}

// closeBreakers stops b's background probes at the end of the test.
func closeBreakers(t *testing.T, b *worker.DatabaseBreakers) {
	t.Cleanup(func() { _ = b.Close() })
}

// TestDatabaseBreakerClosesWithoutTasks: a database found down is seen back
// when it is, also when none of its tasks come to probe it (the tenants
// moved, the database removed, an idle worker): the breakers probe it
// themselves once a probe has been due for ProbeMax, close it, log the
// "reachable again" line and set tenantworker_database_down to 0, instead
// of saying "down" until a task of it comes, perhaps never. Close stops
// those probes.
func TestDatabaseBreakerClosesWithoutTasks(t *testing.T) {
	t.Parallel()
	var up atomic.Bool
	var probes atomic.Int64
	unreachable := &pgconn.PgError{Severity: "FATAL", Code: "57P03", Message: "the database system is starting up"}
	log := &recordedLog{}
	reg := prometheus.NewRegistry()
	b, err := worker.NewDatabaseBreakers(worker.BreakerOptions{
		Probe: func(context.Context, string) error {
			probes.Add(1)
			if up.Load() {
				return nil
			}
			return unreachable
		},
		ProbeMin: 10 * time.Millisecond, ProbeMax: 20 * time.Millisecond,
		Logger: slog.New(log), Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	closeBreakers(t, b)
	catalog := memstore.New()
	tn := addTenant(t, catalog, "no-more-tasks", tenantctx.StatusActive)
	mux := worker.MuxOf(worker.MuxOptions{Logger: slog.New(log), Catalog: catalog, Breakers: b}, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(context.Context, tasks.InvoicePDF) error { return unreachable }),
	})
	if err := mux.ProcessTask(context.Background(), newTask(t, tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1})); !errors.Is(err, worker.ErrDatabaseUnavailable) {
		t.Fatalf("the one attempt: %v; want ErrDatabaseUnavailable", err)
	}
	if !b.Down(tenantctx.DefaultDatabase) {
		t.Fatal("main not down after an attempt found it unreachable")
	}
	testenv.WaitFor(t, 5*time.Second, "a probe without a task", func() bool { return probes.Load() >= 1 })
	if !b.Down(tenantctx.DefaultDatabase) {
		t.Fatal("main closed by a probe that found it down")
	}
	up.Store(true)
	testenv.WaitFor(t, 5*time.Second, "main seen back without a task", func() bool { return !b.Down(tenantctx.DefaultDatabase) })
	if v := testutil.ToFloat64(gatheredGauge(t, reg, "tenantworker_database_down", tenantctx.DefaultDatabase)); v != 0 {
		t.Errorf("tenantworker_database_down{database=main} = %v once it is back, want 0", v)
	}
	if c := log.count(slog.LevelInfo, "database reachable again"); c != 1 {
		t.Errorf("%d \"database reachable again\" lines, want 1", c)
	}
}

// activeTenantOn returns an in-memory catalog (the worker's tenant cache)
// knowing database db at url and an active tenant slug placed on it.
func activeTenantOn(t *testing.T, slug, db, url string) (*memstore.Catalog, tenantctx.Tenant) {
	t.Helper()
	ctx := t.Context()
	cache := memstore.New()
	if _, err := cache.AddDatabase(ctx, db, url); err != nil {
		t.Fatal(err)
	}
	tn, err := tenantctx.New(slug, slug, "pro")
	if err != nil {
		t.Fatal(err)
	}
	tn.Database = db
	if tn, err = cache.CreateTenant(ctx, tn); err != nil {
		t.Fatal(err)
	}
	if tn, err = cache.SetStatus(ctx, tn.ID, tenantctx.StatusActive); err != nil {
		t.Fatal(err)
	}
	return cache, tn
}

// selectOnTenantDatabase is an invoice:pdf handler that runs SELECT 1 on
// its tenant's database through reg, as a render's unit of work does.
func selectOnTenantDatabase(reg *placement.Registry) asynq.Handler {
	return worker.Handle(func(ctx context.Context, _ tasks.InvoicePDF) error {
		tenant, _ := tenantctx.FromContext(ctx)
		pool, err := reg.ForTenant(ctx, tenant)
		if err != nil {
			return err
		}
		_, err = pool.Exec(ctx, "SELECT 1")
		return err
	})
}
