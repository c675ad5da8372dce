package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
)

// benchPoolConns is the bench's own pool size: the worker's default
// (concurrency 10 + headroom 4), so scenario 1's chain gets the pool a
// production worker has.
const benchPoolConns = config.DefaultWorkerConcurrency + config.DefaultDBPoolHeadroom

// coreDB is the database of scenarios 1-4: Tenants active tenants with API
// keys, and invoices once the pdf scenario asks for them.
type coreDB struct {
	url     string
	pool    *pgxpool.Pool
	pg      *storage.Postgres
	tenants []benchTenant
}

// fleetDB is the database of scenarios 5-6.
type fleetDB struct {
	url     string
	pool    *pgxpool.Pool
	pg      *storage.Postgres
	tenants []benchTenant // active tenants, once provisioned
}

// openCore returns the core database, creating and seeding it first.
func (b *bench) openCore(ctx context.Context) (*coreDB, error) {
	if b.core != nil {
		return b.core, nil
	}
	url, pool, pg, err := b.openDatabase(ctx, "core")
	if err != nil {
		return nil, err
	}
	c := &coreDB{url: url, pool: pool, pg: pg}
	b.core = c
	progress("seeding %d active tenants with API keys", b.sz.Tenants)
	if c.tenants, err = seedActiveTenants(ctx, pool, pg, "core", b.sz.Tenants, true); err != nil {
		return nil, err
	}
	return c, nil
}

// openFleet returns the fleet database (empty catalog at first).
func (b *bench) openFleet(ctx context.Context) (*fleetDB, error) {
	if b.fleet != nil {
		return b.fleet, nil
	}
	url, pool, pg, err := b.openDatabase(ctx, "fleet")
	if err != nil {
		return nil, err
	}
	b.fleet = &fleetDB{url: url, pool: pool, pg: pg}
	return b.fleet, nil
}

// openDatabase creates a database with the catalog in it and a pool
// configured like the worker's.
func (b *bench) openDatabase(ctx context.Context, group string) (string, *pgxpool.Pool, *storage.Postgres, error) {
	url, err := b.env.createDatabase(ctx, group)
	if err != nil {
		return "", nil, nil, err
	}
	pool, err := schema.NewPool(ctx, url, schema.PoolOptions{MaxConns: benchPoolConns})
	if err != nil {
		return "", nil, nil, err
	}
	if err := storage.MigrateCatalog(ctx, pool, nil); err != nil {
		pool.Close()
		return "", nil, nil, fmt.Errorf("catalog in %s: %w", group, err)
	}
	return url, pool, storage.NewPostgres(pool), nil
}

// close closes the pools.
func (b *bench) close() {
	if b.core != nil && b.core.pool != nil {
		b.core.pool.Close()
	}
	if b.fleet != nil && b.fleet.pool != nil {
		b.fleet.pool.Close()
	}
}

// quietLogger discards everything.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// plainEnqueuer returns an Enqueuer without fair admission (what
// FAIR_DISPATCH=false builds) over the bench's Redis, and a function that
// closes it. Only a scenario whose workers also run without fair dispatch,
// or that measures the plain path itself, uses it: a worker with fair
// dispatch looks for unannounced tasks only every IDLE_RECHECK_INTERVAL.
func (b *bench) plainEnqueuer() (*tasks.Enqueuer, func()) {
	client := asynq.NewClientFromRedisClient(b.env.rdb)
	inspector := asynq.NewInspectorFromRedisClient(b.env.rdb)
	return tasks.NewEnqueuer(client, inspector, quietLogger()), func() {
		// Closing either would close the shared Redis client.
	}
}

// workerEnqueuer returns the Enqueuer cmd/enqueue builds by default (fair
// admission, the default dispatcher configuration, tenants resolved
// through a cache over catalog), the one that matches cmd/worker's default
// FAIR_DISPATCH, and a function that closes it.
func (b *bench) workerEnqueuer(catalog *storage.Postgres) (*tasks.Enqueuer, func()) {
	cache := storage.NewCache(catalog, b.env.rdb, storage.CacheOptions{})
	enq, _ := b.fairEnqueuer(cache, fair.Config{})
	return enq, func() { _ = cache.Close() }
}

// workerEnv is the environment of a cmd/worker child process.
func (b *bench) workerEnv(databaseURL, name string) map[string]string {
	return map[string]string{
		"DATABASE_URL":      databaseURL,
		"REDIS_URL":         b.env.redisURL,
		"DOCUMENTS_DIR":     b.env.dir + "/" + name + "/documents",
		"OUTBOX_DIR":        b.env.dir + "/" + name + "/outbox",
		"SCHEDULER_ENABLED": "false", // the bench enqueues the sweep itself
		"SHUTDOWN_TIMEOUT":  "10s",
	}
}

// startWorker builds (once) and starts cmd/worker; a build failure skips
// the scenario with the compiler's message.
func (b *bench) startWorker(ctx context.Context, databaseURL, name string) (*proc, error) {
	return b.startWorkerWith(ctx, databaseURL, name, 0, "")
}

// startWorkerWith is startWorker with WORKER_CONCURRENCY set to
// concurrency when it is positive and WORKER_QUEUE_CLASSES to classes
// when it is set.
func (b *bench) startWorkerWith(ctx context.Context, databaseURL, name string, concurrency int, classes string) (*proc, error) {
	env := b.workerEnv(databaseURL, name)
	if concurrency > 0 {
		env["WORKER_CONCURRENCY"] = strconv.Itoa(concurrency)
	}
	if classes != "" {
		env["WORKER_QUEUE_CLASSES"] = classes
	}
	return b.startWorkerEnv(ctx, name, env)
}

// startWorkerEnv builds (once) and starts cmd/worker with env; with
// -cpuprofile FILE it writes its CPU profile to FILE.worker-<name>, so
// every worker the bench starts needs a name of its own. A build failure
// skips the scenario with the compiler's message.
func (b *bench) startWorkerEnv(ctx context.Context, name string, env map[string]string) (*proc, error) {
	bin, err := b.env.binary(ctx, workerPkg)
	if err != nil {
		return nil, skipError{reason: "cmd/worker does not build: " + err.Error()}
	}
	var args []string
	if b.workerProfile != "" {
		args = append(args, "-cpuprofile", b.workerProfile+".worker-"+name)
	}
	return startProc(ctx, "worker", bin, env, args...)
}
