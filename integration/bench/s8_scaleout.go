package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/pgserver"
	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/redisserver"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// scaleSecondDB is the catalog name of the second tenant database.
const scaleSecondDB = "second"

// scaleout is scenario 8, in two parts.
//
// Part 1: provision ScaleTenants tenants through tenancy.Service.Provision
// (placement by the least-loaded registered database) while the real
// cmd/worker runs their tenant:migrate tasks, once with every tenant on
// "main" (baseline) and once with a second throwaway PostgreSQL server
// registered as "second" (TENANT_DATABASES of the worker, the same map in
// the bench's placement.Registry, registered in the catalog): total time,
// tenants/s, and the tenants each database got.
//
// Part 2: no-op tasks enqueued and run (bare asynq, the worker's server
// config, a no-op handler) on the bench's single redis-server and on a
// 6-node Redis Cluster (3 masters, 3 replicas) started for the scenario,
// there once with one queue per class and once with QUEUE_SHARDS=3 (the
// tasks of 48 tenants spread over default's three shards, one per
// master).
func (b *bench) scaleout(ctx context.Context, s *Scenario) error {
	if err := b.scaleoutPlacement(ctx, s); err != nil {
		return fmt.Errorf("part 1 (two databases): %w", err)
	}
	if err := b.scaleoutRedis(ctx, s); err != nil {
		return fmt.Errorf("part 2 (redis cluster): %w", err)
	}
	s.Bound = "part 1: PostgreSQL DDL run by one cmd/worker, 10 tenant:migrate tasks at a time (worker concurrency) whichever database holds the tenant; a second server adds no CPU here (every process shares the same 2 CPUs), so it spreads data, not work. " +
		"Part 2: asynq's per-task Redis round trips; with one queue per class every queue's keys share one hash slot, so the default queue lives on one master of the cluster and a cluster adds a redirect-aware client and more processes, not throughput; QUEUE_SHARDS=3 spreads default over the three masters, which here share the same 2 CPUs with everything else"
	return nil
}

// scaleoutPlacement is part 1.
func (b *bench) scaleoutPlacement(ctx context.Context, s *Scenario) error {
	n := b.sz.ScaleTenants
	s.Sizes["tenants"] = n
	s.Sizes["worker_concurrency"] = config.DefaultWorkerConcurrency
	s.Sizes["provision_parallelism"] = provisionParallelism

	secondURL, stop, how, err := b.secondPostgres(ctx)
	if err != nil {
		return err
	}
	defer stop()
	s.note("part 1: the second database is %s", how)

	progress("scaleout: baseline, %d tenants on one database", n)
	single, singleCounts, err := b.provisionPlaced(ctx, "scale1", n, nil)
	if err != nil {
		return fmt.Errorf("one database: %w", err)
	}
	if err := b.env.flushRedis(ctx); err != nil {
		return err
	}
	progress("scaleout: %d tenants over two databases", n)
	two, counts, err := b.provisionPlaced(ctx, "scale2", n, map[string]string{scaleSecondDB: secondURL})
	if err != nil {
		return fmt.Errorf("two databases: %w", err)
	}
	if singleCounts[tenantctx.DefaultDatabase] != n {
		return fmt.Errorf("one-database run placed %v, want all %d on %s", singleCounts, n, tenantctx.DefaultDatabase)
	}
	onMain, onSecond := counts[tenantctx.DefaultDatabase], counts[scaleSecondDB]
	if onMain+onSecond != n {
		return fmt.Errorf("two-database run placed %v, want %d in all", counts, n)
	}

	s.add(fmt.Sprintf("%d tenants provisioned + migrated over 2 databases", n), two.Seconds(), "s").
		against("same, one database (same run)", single.Seconds(), "s", nil)
	s.add("  tenants/s, 2 databases", float64(n)/two.Seconds(), "tenants/s").
		against("one database", float64(n)/single.Seconds(), "tenants/s", nil)
	s.add("  tenants on main", float64(onMain), "tenants")
	s.add("  tenants on second", float64(onSecond), "tenants")
	hi, lo := max(onMain, onSecond), min(onMain, onSecond)
	balance := float64(hi)
	if lo > 0 {
		balance = float64(hi) / float64(lo)
	} else {
		s.note("one database got no tenant: the balance row shows the other's count instead of a ratio")
	}
	s.add("  balance, max/min tenants per database", balance, "×").
		target("<=", 1.05, false, "<= 1.05 (least-loaded placement)")
	s.note("part 1: timed from the first Provision call to the last tenant:migrate \"task finished\" line of the worker; every tenant was checked active afterwards. The one-database run went first, then the two-database run, each with its own catalog database and worker")
	s.note("part 1: placement reads the tenant counts, then inserts the tenant: %d concurrent Provision calls can all pick the same database, so the counts can differ by up to about %d (which decides the ratio at small sizes)", provisionParallelism, provisionParallelism)
	return nil
}

// secondPostgres returns the URL of an empty database on a second
// throwaway PostgreSQL server, and a function that stops it. With
// DATABASE_URL set (no own server), it is a second database on that server.
func (b *bench) secondPostgres(ctx context.Context) (url string, stop func(), how string, err error) {
	if b.env.pg == nil {
		url, err := b.env.createDatabase(ctx, "second")
		if err != nil {
			return "", nil, "", err
		}
		return url, func() {}, "another database on DATABASE_URL's server (DATABASE_URL given, so no second server was started)", nil
	}
	progress("scaleout: starting a second postgres")
	opts := pgserver.Options{TempRoot: filepath.Dir(b.env.pg.Dir()), MaxConnections: postgresMaxConnections, Logger: b.logger}
	pg, err := pgserver.Start(ctx, opts)
	if errors.Is(err, pgserver.ErrDirUnreachable) {
		opts.TempRoot = ""
		pg, err = pgserver.Start(ctx, opts)
	}
	if err != nil {
		return "", nil, "", fmt.Errorf("second throwaway postgres: %w", err)
	}
	stop = func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := pg.Stop(sctx); err != nil {
			b.logger.Warn("stop second postgres", "error", err)
		}
	}
	url, err = pg.CreateDatabase(ctx, "bench_second_"+b.env.suffix)
	if err != nil {
		stop()
		return "", nil, "", fmt.Errorf("second postgres: %w", err)
	}
	return url, stop, "a second throwaway PostgreSQL server (internal/pgserver, same settings as the first) on the same machine", nil
}

// provisionPlaced creates a catalog database named after group, registers
// the databases of urls (TENANT_DATABASES) besides "main", starts
// cmd/worker with them and provisions n tenants, returning the time from
// the first Provision call to the last tenant:migrate finished and the
// tenants per database from the catalog.
func (b *bench) provisionPlaced(ctx context.Context, group string, n int, urls map[string]string) (time.Duration, map[string]int, error) {
	catalogURL, pool, pg, err := b.openDatabase(ctx, group)
	if err != nil {
		return 0, nil, err
	}
	defer pool.Close()
	cache := storage.NewCache(pg, b.env.rdb, storage.CacheOptions{})
	defer cache.Close()
	reg := placement.New(placement.Options{MainPool: pool, URLs: urls, Catalog: cache, MaxConns: benchPoolConns, Logger: quietLogger()})
	defer reg.Close()
	if err := reg.Register(ctx); err != nil {
		return 0, nil, err
	}

	env := b.workerEnv(catalogURL, group)
	if len(urls) > 0 {
		var parts []string
		for name, u := range urls {
			parts = append(parts, name+"="+u)
		}
		slices.Sort(parts)
		env["TENANT_DATABASES"] = strings.Join(parts, ",")
	}
	w, err := b.startWorkerEnv(ctx, "scaleout-"+group, env)
	if err != nil {
		return 0, nil, err
	}
	defer w.stop()
	enq, done := b.workerEnqueuer(pg)
	defer done()
	svc := tenancy.New(tenancy.Config{Catalog: cache, Enqueuer: enq, SchemaPool: pool, Pools: reg})

	mark := w.tracker.mark()
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(provisionParallelism)
	for i := range n {
		g.Go(func() error {
			_, err := svc.Provision(gctx, tenancy.NewTenant{Slug: slugFor(group, i), Name: fmt.Sprintf("Scale Tenant %d", i), Plan: "pro"}, "bench")
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return 0, nil, fmt.Errorf("provision: %w", err)
	}
	err = w.waitFor(ctx, 30*time.Minute, 50*time.Millisecond, "migrations", func() (bool, error) {
		got, failed := w.tracker.count(mark, tasks.TypeTenantMigrate)
		if failed > 0 {
			return false, fmt.Errorf("%d tenant:migrate attempts did not succeed\n%s", failed, w.logTail())
		}
		return got >= n, nil
	})
	if err != nil {
		return 0, nil, err
	}
	var last time.Time
	for _, e := range w.tracker.since(mark) {
		if e.TaskType == tasks.TypeTenantMigrate && e.At.After(last) {
			last = e.At
		}
	}
	elapsed := last.Sub(start)
	active, err := countActive(ctx, pg)
	if err != nil {
		return 0, nil, err
	}
	if active != n {
		return 0, nil, fmt.Errorf("%d of %d tenants active after their migrations", active, n)
	}
	dbs, err := cache.Databases(ctx)
	if err != nil {
		return 0, nil, err
	}
	counts := map[string]int{}
	for _, d := range dbs {
		counts[d.Name] = d.Tenants
	}
	// The schemas are where the catalog says: count them on each server.
	for name := range counts {
		p, err := reg.Pool(ctx, name)
		if err != nil {
			return 0, nil, err
		}
		var schemas int
		if err := p.QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant\\_%'").Scan(&schemas); err != nil {
			return 0, nil, fmt.Errorf("count schemas on %s: %w", name, err)
		}
		if schemas != counts[name] {
			return 0, nil, fmt.Errorf("database %s: catalog places %d tenants there, it holds %d tenant schemas", name, counts[name], schemas)
		}
	}
	return elapsed, counts, nil
}

// scaleoutRedis is part 2.
func (b *bench) scaleoutRedis(ctx context.Context, s *Scenario) error {
	n := b.sz.MiddlewareN
	s.Sizes["redis_tasks_per_round"] = n
	s.Sizes["redis_rounds"] = b.sz.Rounds
	s.Sizes["redis_warmup_tasks"] = b.sz.WarmN

	single := b.env.rdb
	if b.env.redis == nil {
		// REDIS_URL given (maybe a cluster itself): compare with an own
		// single server.
		dir := filepath.Join(b.env.dir, "scaleout-redis")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		srv, err := startRedis(ctx, dir)
		if err != nil {
			return err
		}
		defer srv.Stop(context.WithoutCancel(ctx))
		opt, err := config.ParseRedisURL(srv.URL())
		if err != nil {
			return err
		}
		rc := opt.MakeRedisClient().(redis.UniversalClient)
		defer rc.Close()
		single = rc
	}

	progress("scaleout: starting a 6-node redis cluster")
	dir := filepath.Join(b.env.dir, "scaleout-cluster")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	copts := redisserver.ClusterOptions{Dir: dir}
	if _, err := os.Stat(redisServerPath); err == nil {
		copts.Bin = redisServerPath
	}
	cl, err := redisserver.StartCluster(ctx, copts)
	if err != nil {
		return err
	}
	defer cl.Stop(context.WithoutCancel(ctx))
	opt, err := config.ParseRedisURL(cl.URL())
	if err != nil {
		return err
	}
	cluster, ok := opt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return fmt.Errorf("cluster URL: unsupported redis connection %T", opt)
	}
	defer cluster.Close()
	if err := cluster.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("cluster ping: %w", err)
	}
	master, slot, err := cl.MasterOf(ctx, "asynq:{"+tasks.QueueDefault+"}:pending")
	if err != nil {
		return err
	}
	masters, err := cl.Masters(ctx)
	if err != nil {
		return err
	}
	sharded, err := tasks.NewLayout(3, 0)
	if err != nil {
		return err
	}
	var placed []string
	for i := range sharded.Shards() {
		q := tasks.ShardQueue(tasks.QueueDefault, i)
		m, slot, err := cl.MasterOf(ctx, "asynq:{"+q+"}:pending")
		if err != nil {
			return err
		}
		placed = append(placed, fmt.Sprintf("%s slot %d on %s", q, slot, m.Addr()))
	}

	targets := []struct {
		name   string
		rdb    redis.UniversalClient
		layout tasks.Layout
	}{{"single", single, tasks.Layout{}}, {"cluster", cluster, tasks.Layout{}}, {"sharded", cluster, sharded}}
	rounds := map[string][]float64{}
	for r := range b.sz.Rounds + 1 { // round 0 warms up
		for _, t := range targets {
			if err := flushDB(ctx, t.rdb); err != nil {
				return fmt.Errorf("flush %s: %w", t.name, err)
			}
			m := n
			if r == 0 {
				m = b.sz.WarmN
			}
			rate, err := noopEndToEnd(ctx, t.rdb, m, t.layout)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			if r > 0 {
				rounds[t.name] = append(rounds[t.name], rate)
				progress("scaleout: round %d: no-op enqueue+run on %s redis (%s queue shards) %.0f tasks/s", r, t.name, t.layout, rate)
			}
		}
	}
	if err := flushDB(ctx, cluster); err != nil {
		return err
	}
	s.add("no-op tasks enqueued + run, Redis Cluster (3 masters + 3 replicas)", median(rounds["cluster"]), "tasks/s").withRounds(rounds["cluster"]).
		against("single redis-server", median(rounds["single"]), "tasks/s", rounds["single"])
	s.add("no-op tasks enqueued + run, same cluster, QUEUE_SHARDS=3 (default on 3 masters)", median(rounds["sharded"]), "tasks/s").withRounds(rounds["sharded"]).
		against("single redis-server", median(rounds["single"]), "tasks/s", rounds["single"])
	s.add("  QUEUE_SHARDS=3 against one queue per class, same cluster", median(rounds["sharded"]), "tasks/s").
		against("cluster, one queue per class", median(rounds["cluster"]), "tasks/s", rounds["cluster"])
	s.note("part 2: %d no-op invoice:pdf-shaped tasks per round on queue default, enqueued by 16 producers while an in-process asynq server (worker.ServerConfig, concurrency %d, no middleware) runs them, timed from the first enqueue to the last handler return; rounds alternate single/cluster/sharded cluster after a warm-up of %d each", n, worker.DefaultConcurrency, b.sz.WarmN)
	s.note("part 2: asynq tags every key of a queue with the queue's name, so each queue hashes to one slot and lives on one master: queue default is slot %d on master %s of %d here (docs/operations.md: critical and default on the 2nd master, low on the 3rd); the cluster run also pays the cluster client and 6 redis-server processes (replication included) on the same CPUs", slot, master.Addr(), len(masters))
	s.note("part 2, QUEUE_SHARDS=3: the tasks name 48 tenants in turn, picked so that each of default's shards gets 16 of them and a third of the tasks (%s); the server serves all 9 queues (each shard with its class's weight), so an idle poll costs 9 dequeue scripts instead of 3", strings.Join(placed, ", "))
	return nil
}

// balancedTenants returns n tenant ids (n a multiple of the shard count)
// of which each shard of layout gets the same number.
func balancedTenants(layout tasks.Layout, n int) []string {
	per := n / layout.Shards()
	count := make([]int, layout.Shards())
	var out []string
	for i := 0; len(out) < n; i++ {
		id := fmt.Sprintf("tn_bench%03d", i)
		if s := tasks.ShardOf(id, layout.Shards()); count[s] < per {
			count[s]++
			out = append(out, id)
		}
	}
	return out
}

// noopEndToEnd runs an asynq server configured like the worker with a
// no-op handler on rdb, serving layout's queues, enqueues n tasks of 48
// tenants from 16 producers while it runs, each in its tenant's queue of
// default, and returns tasks/s from the first enqueue to the n-th
// completion.
func noopEndToEnd(ctx context.Context, rdb redis.UniversalClient, n int, layout tasks.Layout) (float64, error) {
	var left atomic.Int64
	left.Store(int64(n))
	done := make(chan struct{})
	h := asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		if left.Add(-1) == 0 {
			close(done)
		}
		return nil
	})
	errs := &errorLog{}
	srv := asynq.NewServerFromRedisClient(rdb, worker.ServerConfig(worker.ServerOptions{Layout: layout, Logger: slog.New(errs)}))
	if err := srv.Start(h); err != nil {
		return 0, fmt.Errorf("start server: %w", err)
	}
	client := asynq.NewClientFromRedisClient(rdb)
	tenants := balancedTenants(layout, 48)
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	const producers = 16
	for w := range producers {
		g.Go(func() error {
			for i := w; i < n; i += producers {
				tenant := tenants[i%len(tenants)]
				payload := fmt.Appendf(nil, `{"tenant_id":%q,"invoice_id":%d}`, tenant, i)
				if _, err := client.EnqueueContext(gctx, asynq.NewTask(tasks.TypeInvoicePDF, payload),
					asynq.Queue(layout.Queue(tasks.QueueDefault, tenant)), asynq.MaxRetry(1)); err != nil {
					return fmt.Errorf("enqueue: %w", err)
				}
			}
			return nil
		})
	}
	produced := make(chan error, 1)
	go func() { produced <- g.Wait() }()
	timeout := time.Minute + time.Duration(n)*time.Millisecond
	var elapsed time.Duration
	select {
	case <-done:
		elapsed = time.Since(start)
	case err := <-produced:
		if err != nil {
			srv.Shutdown()
			return 0, err
		}
		select {
		case <-done:
			elapsed = time.Since(start)
		case <-time.After(timeout):
		case <-ctx.Done():
		}
	case <-time.After(timeout):
	case <-ctx.Done():
	}
	srv.Shutdown()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if elapsed == 0 {
		return 0, fmt.Errorf("%d of %d tasks not done after %s; errors: %s", left.Load(), n, timeout, errs.summary())
	}
	if msg := errs.summary(); msg != "" {
		return 0, fmt.Errorf("task errors: %s", msg)
	}
	return float64(n) / elapsed.Seconds(), nil
}
