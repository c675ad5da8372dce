package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// provisionParallelism is how many provisioning calls the bench makes at
// once (an operator script or the admin API under load).
const provisionParallelism = 8

// migrate is scenario 5 (P7 in docs/architecture.md): provision
// FleetTenants tenants the way POST /admin/tenants does
// (tenancy.Service.Provision: catalog row in status provisioning, API key,
// audit entry, tenant:migrate enqueued) while the real cmd/worker runs, and
// time until the last tenant:migrate task finished (its schema created and
// migrated, the tenant active). Then a second run with nothing pending:
// tenancy.Service.MigrateAll (what `enqueue migrate --all` does) until the
// last of its tasks finished.
//
// Baselines: schema.Migrate called directly, from as many goroutines as the
// worker's concurrency, for the same number of fresh schemas in another
// database, and again with nothing pending: what the DDL costs without the
// task system.
func (b *bench) migrate(ctx context.Context, s *Scenario) error {
	fleet, err := b.openFleet(ctx)
	if err != nil {
		return err
	}
	if len(fleet.tenants) > 0 {
		return fmt.Errorf("fleet database already has tenants")
	}
	n := b.sz.FleetTenants
	s.Sizes["tenants"] = n
	s.Sizes["schema_versions"] = schema.LatestVersion()
	s.Sizes["worker_concurrency"] = config.DefaultWorkerConcurrency
	s.Sizes["provision_parallelism"] = provisionParallelism

	progress("migrate: baseline, schema.Migrate of %d fresh schemas in process", n)
	baseFresh, baseNoop, err := b.directMigrations(ctx, n)
	if err != nil {
		return err
	}

	w, err := b.startWorker(ctx, fleet.url, "migrate")
	if err != nil {
		return err
	}
	defer w.stop()
	cache := storage.NewCache(fleet.pg, b.env.rdb, storage.CacheOptions{})
	defer cache.Close()
	enq, done := b.workerEnqueuer(fleet.pg)
	defer done()
	svc := tenancy.New(tenancy.Config{Catalog: cache, Enqueuer: enq})

	progress("migrate: provisioning %d tenants through tenant:migrate", n)
	mark := w.tracker.mark()
	start := time.Now()
	tenants := make([]benchTenant, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(provisionParallelism)
	for i := range n {
		g.Go(func() error {
			res, err := svc.Provision(gctx, tenancy.NewTenant{Slug: slugFor("fleet", i), Name: fmt.Sprintf("Fleet Tenant %d", i), Plan: "pro"}, "bench")
			if err != nil {
				return err
			}
			tenants[i] = benchTenant{Tenant: res.Tenant, APIKey: res.APIKey}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	provisioned := time.Since(start)
	waitMigrations := func(mark int, what string) (time.Time, error) {
		err := w.waitFor(ctx, 10*time.Minute, 50*time.Millisecond, what, func() (bool, error) {
			got, failed := w.tracker.count(mark, tasks.TypeTenantMigrate)
			if failed > 0 {
				return false, fmt.Errorf("%s: %d tenant:migrate attempts did not succeed\n%s", what, failed, w.logTail())
			}
			return got >= n, nil
		})
		if err != nil {
			return time.Time{}, err
		}
		var last time.Time
		for _, e := range w.tracker.since(mark) {
			if e.TaskType == tasks.TypeTenantMigrate && e.At.After(last) {
				last = e.At
			}
		}
		return last, nil
	}
	last, err := waitMigrations(mark, "first migration")
	if err != nil {
		return err
	}
	firstRun := last.Sub(start)
	active, err := countActive(ctx, fleet.pg)
	if err != nil {
		return err
	}
	if active != n {
		return fmt.Errorf("%d of %d tenants active after their migrations", active, n)
	}
	for i := range tenants {
		tenants[i].Status = tenantctx.StatusActive
	}
	fleet.tenants = tenants

	progress("migrate: no-op run (MigrateAll)")
	mark = w.tracker.mark()
	start = time.Now()
	enqueued, err := svc.MigrateAll(ctx)
	if err != nil {
		return fmt.Errorf("migrate all: %w", err)
	}
	enqueueAll := time.Since(start)
	if len(enqueued) != n {
		return fmt.Errorf("migrate all enqueued %d tasks for %d tenants", len(enqueued), n)
	}
	last, err = waitMigrations(mark, "no-op migration")
	if err != nil {
		return err
	}
	noop := last.Sub(start)

	s.add(fmt.Sprintf("%d tenants provisioned + migrated", n), firstRun.Seconds(), "s").
		against("schema.Migrate direct, 10 goroutines", baseFresh.Seconds(), "s", nil).
		target("<", 60, false, "< 60 s (1,000 tenants)")
	s.add("  of which provisioning calls", provisioned.Seconds(), "s")
	s.add(fmt.Sprintf("no-op migrate --all over %d", n), noop.Seconds(), "s").
		against("schema.Migrate direct, nothing pending", baseNoop.Seconds(), "s", nil).
		target("<", 10, false, "< 10 s (1,000 tenants)")
	s.add("  of which MigrateAll enqueueing", enqueueAll.Seconds(), "s")
	if n != 1000 {
		s.note("targets are for 1,000 tenants; this run used %d (times grow about linearly with tenants)", n)
	}
	s.note("timed from the first Provision call (or MigrateAll) to the last tenant:migrate \"task finished\" line of the worker; every tenant was checked active afterwards")
	s.Bound = "first run: PostgreSQL DDL (CREATE SCHEMA + 7 tables/indexes per tenant, 2 migration transactions with a per-tenant advisory lock) on 2 CPUs, 10 at a time (worker concurrency); no-op run: per tenant one version read plus the task round trips (MigrateAll replaces the finished task: enqueue, inspect, delete, enqueue) — Redis round trips, not PostgreSQL"
	return nil
}

// directMigrations migrates n fresh schemas with schema.Migrate from
// DefaultWorkerConcurrency goroutines in a database of their own, then
// runs it again with nothing pending, and returns both durations.
func (b *bench) directMigrations(ctx context.Context, n int) (fresh, noop time.Duration, err error) {
	_, pool, _, err := b.openDatabase(ctx, "base")
	if err != nil {
		return 0, 0, err
	}
	defer pool.Close()
	run := func() (time.Duration, error) {
		var next atomic.Int64
		var mu sync.Mutex
		var first error
		var wg sync.WaitGroup
		start := time.Now()
		for range config.DefaultWorkerConcurrency {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= n || ctx.Err() != nil {
						return
					}
					if _, err := schema.Migrate(ctx, pool, tenantctx.SchemaForSlug(slugFor("base", i)), 0); err != nil {
						mu.Lock()
						first = err
						mu.Unlock()
						return
					}
				}
			})
		}
		wg.Wait()
		if first == nil {
			first = ctx.Err()
		}
		return time.Since(start), first
	}
	if fresh, err = run(); err != nil {
		return 0, 0, fmt.Errorf("direct migrations: %w", err)
	}
	if noop, err = run(); err != nil {
		return 0, 0, fmt.Errorf("direct no-op migrations: %w", err)
	}
	return fresh, noop, nil
}

// countActive counts active tenants in the catalog.
func countActive(ctx context.Context, catalog storage.TenantStore) (int, error) {
	n := 0
	opts := storage.ListOptions{Status: tenantctx.StatusActive, Limit: storage.MaxPageSize}
	for {
		page, err := catalog.ListTenants(ctx, opts)
		if err != nil {
			return 0, fmt.Errorf("list active tenants: %w", err)
		}
		n += len(page)
		if len(page) < opts.PageLimit() {
			return n, nil
		}
		opts.After = page[len(page)-1].ID
	}
}
