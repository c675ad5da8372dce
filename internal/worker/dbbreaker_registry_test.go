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
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
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
	mainSrv, xSrv := testenv.StartPostgres(t), testenv.StartPostgres(t)
	mainPool := openPool(t, mainSrv.CreateDatabase(t), 4)
	xURL := xSrv.CreateDatabase(t)
	onMain := catalogRegisteringX(t, mainPool, xURL)
	reg := newRegistry(t, placement.Options{MainPool: mainPool, Catalog: onMain, MaxConns: 2, RefreshInterval: -1})

	// The tenant's look-up, as the worker's tenant cache answers it
	// while "main" is down.
	cache, tn := activeTenantOn(t, "probe-x", "x", xURL)

	c := newBreakerChain(t, worker.BreakerOptions{
		Probe:    breakerProbe(reg),
		ProbeMin: 20 * time.Millisecond, ProbeMax: 100 * time.Millisecond,
		Registerer: prometheus.NewRegistry(),
	}, cache, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: selectOnTenantDatabase(reg),
	})
	breakers := c.breakers
	run := func() error { return c.render(tn) }
	if err := run(); err != nil {
		t.Fatalf("task with both databases up: %v", err)
	}

	stopServer(t, xSrv)
	if err := run(); !errors.Is(err, worker.ErrDatabaseUnavailable) || worker.IsFailure(err) {
		t.Fatalf("task with x stopped: %v; want ErrDatabaseUnavailable", err)
	}
	if !breakers.Down("x") {
		t.Fatal("x not down after an attempt found it unreachable")
	}
	stopServer(t, mainSrv)
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
	catalog := memstore.New()
	tn := addTenant(t, catalog, "probe-panics", tenantctx.StatusActive)
	unreachable := startingUp()
	c := newBreakerChain(t, worker.BreakerOptions{
		Probe: func(context.Context, string) error {
			if probes.Add(1) == 1 {
				panic("probe bug")
			}
			return nil
		},
		ProbeMin: 5 * time.Millisecond, ProbeMax: 10 * time.Millisecond,
	}, catalog, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(context.Context, tasks.InvoicePDF) error {
			if !up.Load() {
				return unreachable
			}
			return nil
		}),
	})
	b := c.breakers
	run := func() error { return c.render(tn) }
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
	mainPool := openPool(t, testenv.Postgres(t), 2)
	xURL := testenv.StartPostgres(t).CreateDatabase(t)
	reg := newRegistry(t, placement.Options{MainPool: mainPool, URLs: map[string]string{"x": xURL}, MaxConns: 1, RefreshInterval: -1})

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
	var attempts atomic.Int64
	c := newBreakerChain(t, worker.BreakerOptions{
		Probe: func(ctx context.Context, name string) error {
			probes.Add(1)
			return breakerProbe(reg)(ctx, name)
		},
		ProbeMin: 10 * time.Millisecond, ProbeMax: 20 * time.Millisecond, ProbeTimeout: 300 * time.Millisecond,
	}, cache, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: failsFirst(&attempts),
	})
	breakers := c.breakers
	run := func() error { return c.render(tn) }
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
	mainSrv := testenv.StartPostgres(t)
	mainPool := openPool(t, mainSrv.CreateDatabase(t), 2)
	xURL := testenv.StartPostgres(t).CreateDatabase(t)
	reg := newRegistry(t, placement.Options{MainPool: mainPool, URLs: map[string]string{"x": xURL}, MaxConns: 2, RefreshInterval: -1})

	cache, tn := activeTenantOn(t, "writes-main", "x", xURL)
	// A render runs on the tenant's database; the destroy's handler
	// writes main (the catalog), as tenant:destroy does.
	c := newBreakerChain(t, worker.BreakerOptions{
		Probe: breakerProbe(reg), Locate: breakerLocate(reg),
		ProbeMin: 10 * time.Millisecond, ProbeMax: 20 * time.Millisecond,
	}, cache, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: selectOnTenantDatabase(reg),
		tasks.TypeTenantMigrate: worker.Handle(func(ctx context.Context, _ tasks.TenantMigrate) error {
			_, err := mainPool.Exec(ctx, "SELECT 1")
			return err
		}),
	})
	breakers, run := c.breakers, c.run
	render := tasks.InvoicePDF{TenantID: tn.ID, InvoiceID: 1}
	if err := run(render); err != nil {
		t.Fatalf("render with both databases up: %v", err)
	}
	mainPool.Reset() // no connection opened before main stops
	stopServer(t, mainSrv)
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
	unreachable := startingUp()
	log := &recordedLog{}
	reg := prometheus.NewRegistry()
	catalog := memstore.New()
	tn := addTenant(t, catalog, "no-more-tasks", tenantctx.StatusActive)
	c := newBreakerChain(t, worker.BreakerOptions{
		Probe: func(context.Context, string) error {
			probes.Add(1)
			if up.Load() {
				return nil
			}
			return unreachable
		},
		ProbeMin: 10 * time.Millisecond, ProbeMax: 20 * time.Millisecond,
		Logger: slog.New(log), Registerer: reg,
	}, catalog, map[string]asynq.Handler{
		tasks.TypeInvoicePDF: worker.Handle(func(context.Context, tasks.InvoicePDF) error { return unreachable }),
	})
	b := c.breakers
	if err := c.render(tn); !errors.Is(err, worker.ErrDatabaseUnavailable) {
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
