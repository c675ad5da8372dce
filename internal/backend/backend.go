// Package backend is the one composition root of both binaries: from a
// resolved configuration it opens Redis, the PostgreSQL pools, migrates the
// tenant catalog (once, as its own step), and builds the cached catalog,
// the document store, the asynq client and inspector, the one
// tasks.Enqueuer and the tenancy.Service. The worker adds its mailer,
// metrics and task server on top (internal/workerapp); the enqueue service
// adds the HTTP API (internal/enqueueapp), with its enqueues autopipelined.
// The dev stack opens one Backend and hands it to both.
package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/fair"
	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/placement"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/invoice"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
)

// Backend is what both binaries run on. Close releases what Open built.
type Backend struct {
	// RedisConnOpt is the parsed REDIS_URL (the dashboard opens its own
	// connections from it).
	RedisConnOpt asynq.RedisConnOpt
	// Redis is the client shared by the enqueuer, the tenant cache, the
	// worker's task server and the readiness checks.
	Redis redis.UniversalClient
	// Pool is the application pool (schema.NewPool: empty search_path,
	// verified releases), DB_MAX_CONNS connections.
	Pool *pgxpool.Pool
	// Lanes serve tenants' units of work on "main" (DB_POOL_LANES > 1,
	// through Pools.ForTenant); nil when lanes are off.
	Lanes *schema.Lanes
	// SchemaPool runs schema changes: a pool on MIGRATIONS_DATABASE_URL when
	// it differs from DATABASE_URL (its session locks survive a
	// transaction-pooling PgBouncer), otherwise Pool.
	SchemaPool *pgxpool.Pool
	// Postgres is the catalog itself, migrated by Open.
	Postgres *storage.Postgres
	// Catalog is Postgres behind the in-process and Redis cache: what
	// everything else reads through.
	Catalog *storage.Cache
	// Pools maps tenant databases to pools ("main" is Pool and SchemaPool;
	// the others, from TENANT_DATABASES or `enqueue db add`, are opened on
	// first use with TENANT_DB_MAX_CONNS connections each). Reach a
	// tenant's schema through Pools.ForTenant.
	Pools *placement.Registry
	// Documents is the document store in DOCUMENTS_DIR.
	Documents storage.DocumentStore
	// Client and Inspector share Redis; with Options.AutoPipeline the
	// client's commands go through an autopipeliner.
	Client    *asynq.Client
	Inspector *asynq.Inspector
	// Dispatcher admits tenant tasks fairly (package fair); nil with
	// FAIR_DISPATCH=false. It uses the enqueuing Redis client.
	Dispatcher *fair.Dispatcher
	// AdmissionWait is the histogram of backlog waits the dispatcher
	// observes; each binary registers it with its metrics.
	AdmissionWait *prometheus.HistogramVec
	// Layout maps queue classes to queues (QUEUE_SHARDS,
	// QUEUE_SHARDS_SERVED); the Enqueuer, and through it the Tenancy
	// service, uses it, and the worker serves its queues.
	Layout tasks.Layout
	// Enqueuer is the one enqueuer of the process, with TaskRecords and
	// Layout.
	Enqueuer *tasks.Enqueuer
	// TaskRecords keeps each tenant's records of its archived tasks: the
	// worker writes them, the enqueuer falls back to them.
	TaskRecords *tasks.TaskRecords
	// Tenancy runs the tenant lifecycle on the above.
	Tenancy *tenancy.Service

	closers []func() error
}

// Options are what the binaries differ in.
type Options struct {
	// AutoPipeline makes concurrent enqueues share Redis pipelines
	// (go-redis autopipelining; the enqueue service with
	// REDIS_AUTOPIPELINE). A lone enqueue is sent at once.
	AutoPipeline bool
	// ContextTimeouts makes the Redis client end a command at its
	// context's deadline (config.WithContextTimeouts), not only at the
	// client's ReadTimeout: the enqueue service, whose requests answer at
	// their deadline (REQUEST_TIMEOUT, ADMIN_REQUEST_TIMEOUT) and whose
	// work must stop there too. The dashboard's own connections are made
	// without it.
	ContextTimeouts bool
	// ExistingDocumentsDir opens the document store in DOCUMENTS_DIR
	// without creating the directory when it is missing
	// (storage.OpenFS): the operator CLI's one-shot commands, which write
	// no documents, so that one run in another working directory leaves
	// no empty ./data/documents behind, which a later `documents prune`
	// there would take for the workers' directory and report nothing to
	// remove. The binaries' long-running processes create it.
	ExistingDocumentsDir bool
}

// Open builds a Backend from cfg, which must be resolved
// (config.Config.Resolve). On error it releases whatever it built. Errors
// name the variable or the dependency at fault.
func Open(ctx context.Context, cfg config.Config, logger *slog.Logger, opts Options) (_ *Backend, err error) {
	if logger == nil {
		logger = slog.Default()
	}
	layout, err := Layout(cfg)
	if err != nil {
		return nil, err
	}
	b := &Backend{Layout: layout}
	defer func() {
		if err != nil {
			err = errors.Join(err, b.Close())
		}
	}()
	if err := b.openRedis(ctx, cfg, opts.ContextTimeouts); err != nil {
		return nil, err
	}
	warnIfEvicting(ctx, b.Redis, logger)
	if err := b.openPools(ctx, cfg, logger); err != nil {
		return nil, err
	}
	if err := storage.MigrateCatalog(ctx, b.SchemaPool, logger); err != nil {
		return nil, err
	}
	if b.SchemaPool != b.Pool {
		pctx, cancel := context.WithTimeout(ctx, startupPingTimeout)
		err := checkGrants(pctx, b.Pool, b.SchemaPool)
		cancel()
		if err != nil {
			return nil, err
		}
	}
	b.Postgres = storage.NewPostgres(b.Pool)
	b.Catalog = storage.NewCache(b.Postgres, b.Redis, storage.CacheOptions{RedisTTL: cfg.TenantCacheTTL, Logger: logger})
	b.closers = append(b.closers, b.Catalog.Close)
	b.Pools = placement.New(placement.Options{
		MainPool: b.Pool, MainSchemaPool: b.SchemaPool, URLs: cfg.TenantDatabases,
		Catalog: b.Catalog, MaxConns: int32(cfg.TenantDBMaxConns), Lanes: cfg.DBPoolLanes, KeepConns: cfg.DBKeepConns, Logger: logger,
		MainLanes: b.Lanes,
	})
	b.closers = append(b.closers, b.Pools.Close)
	// As `enqueue db add` checks a database, before registering it: a
	// role that may not create schemas stops the start; a database down
	// is a warning.
	if err := b.Pools.CheckConfigured(ctx); err != nil {
		return nil, err
	}
	if err := b.Pools.Register(ctx); err != nil {
		return nil, err
	}

	openFS := storage.NewFS
	if opts.ExistingDocumentsDir {
		openFS = storage.OpenFS
	}
	fs, err := openFS(cfg.DocumentsDir)
	if err != nil {
		return nil, fmt.Errorf("DOCUMENTS_DIR: %w", err)
	}
	if !fs.OpenAt2() {
		logger.Warn("document store: no openat2 (Linux 5.6 or later, or refused by a seccomp filter): symbolic links in DOCUMENTS_DIR are refused by a check before each operation, which a directory swapped meanwhile can get past",
			slog.String("documents_dir", fs.Root()))
	}
	b.Documents = fs

	enqueueRedis := b.Redis
	if opts.AutoPipeline {
		ap, err := autoPipeline(b.Redis)
		if err != nil {
			return nil, err
		}
		if ap != nil {
			enqueueRedis = ap
			b.closers = append(b.closers, ap.Close)
		}
	}
	// The client and inspector share the Redis client and close nothing of
	// their own.
	b.Client = asynq.NewClientFromRedisClient(enqueueRedis)
	b.Inspector = asynq.NewInspectorFromRedisClient(b.Redis)
	b.TaskRecords = tasks.NewTaskRecords(enqueueRedis, tasks.TaskRecordsOptions{})
	enqOpts := []tasks.Option{tasks.WithLayout(b.Layout), tasks.WithRedis(b.Redis)}
	if cfg.FairDispatch {
		hist, observe := fair.WaitHistogram()
		b.AdmissionWait = hist
		// Holds: the catalog's suspensions and pauses, put back by the
		// workers when Redis lost its data (read only then; b.Tenancy is
		// set below, before any call).
		b.Dispatcher = fair.New(enqueueRedis, fair.Config{PendingTime: cfg.FairPendingTime, MaxWaitingTotal: cfg.FairMaxWaitingTotal, OnAdmit: observe,
			TaskIDs: tasks.TenantIDStems, Holds: func(ctx context.Context) ([]fair.Holding, error) { return b.Tenancy.Holds(ctx) }})
		enqOpts = append(enqOpts, tasks.WithAdmission(tasks.Admission{Dispatcher: b.Dispatcher, Tenants: b.Catalog, Plans: cfg.Plans}))
	}
	b.Enqueuer = tasks.NewEnqueuer(b.Client, b.Inspector, logger, enqOpts...).WithTaskRecords(b.TaskRecords)
	// Closed first (closers run last to first): enqueues whose callers
	// gave up (an HTTP request past REQUEST_TIMEOUT) end with Redis's
	// answer before the clients they use are closed.
	b.closers = append(b.closers, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), enqueueWaitTimeout)
		defer cancel()
		return b.Enqueuer.Wait(ctx)
	})
	b.Tenancy = tenancy.New(tenancy.Config{
		Catalog: b.Catalog, Enqueuer: b.Enqueuer, Documents: b.Documents, DocumentDirs: []string{invoice.DocumentDir},
		SchemaPool: b.SchemaPool, Pools: b.Pools, Logger: logger,
		Dispatcher: b.Dispatcher, Plans: cfg.Plans,
	})
	// Closed before the enqueues are waited for: the completions of admin
	// changes that went on past their request's deadline (an HTTP request
	// past ADMIN_REQUEST_TIMEOUT) end before the clients they use are
	// closed (they may enqueue a tenant:destroy).
	b.closers = append(b.closers, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), enqueueWaitTimeout)
		defer cancel()
		return b.Tenancy.Wait(ctx)
	})
	return b, nil
}

// enqueueWaitTimeout bounds how long Close waits for enqueues whose
// callers gave up: longer than the Redis client's own timeouts and retries
// of one enqueue (3 s a try).
const enqueueWaitTimeout = 15 * time.Second

// startupPingTimeout bounds each start-up check that Redis and PostgreSQL
// answer: a server that accepts connections and never answers makes the
// process fail with the reason instead of hanging without a word.
const startupPingTimeout = 30 * time.Second

// openRedis opens REDIS_URL (OpenRedis) and checks that the processes
// sharing the Redis dispatch as cfg does (fair.ClaimMode: the first process
// records its FAIR_DISPATCH, later ones with the other setting refuse to
// start).
func (b *Backend) openRedis(ctx context.Context, cfg config.Config, contextTimeouts bool) error {
	connOpt, rc, err := openRedis(ctx, cfg, contextTimeouts)
	if err != nil {
		return err
	}
	b.RedisConnOpt, b.Redis = connOpt, rc
	b.closers = append(b.closers, rc.Close)
	pctx, cancel := context.WithTimeout(ctx, startupPingTimeout)
	defer cancel()
	if err := fair.ClaimMode(pctx, rc, fair.ModeOf(cfg.FairDispatch)); err != nil {
		if errors.Is(err, fair.ErrModeMismatch) {
			return fmt.Errorf("FAIR_DISPATCH: %w; every process sharing a Redis must use the same setting: use theirs, or stop them all and switch with \"enqueue dispatch-mode\" (docs/fair-dispatch.md, \"One mode per Redis\")", err)
		}
		return err
	}
	return nil
}

// warnIfEvicting logs a warning when Redis (each master of a cluster) has
// a maxmemory-policy other than noeviction: at maxmemory it would drop
// keys without a word, asynq's tasks and the fair dispatcher's backlogs
// and counters among them (a volatile-* policy those with a TTL: the
// tenant cache's guard keys, the dispatcher's record of applied reports).
// When the REDIS_URL user may not run INFO (an ACL user without @dangerous,
// as managed services hand out, whose default policy is often
// volatile-lru) or Redis does not know it (disabled by rename-command, as
// hardening guides advise) it warns that the policy was not checked; a
// Redis without INFO's memory section (the dev stack's miniredis) is
// logged at debug level only.
func warnIfEvicting(ctx context.Context, rc redis.UniversalClient, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, startupPingTimeout)
	defer cancel()
	check := func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "memory").Result()
		if err != nil {
			level := slog.LevelDebug
			if strings.HasPrefix(err.Error(), "NOPERM") || strings.HasPrefix(err.Error(), "ERR unknown command") {
				level = slog.LevelWarn
			}
			logger.Log(ctx, level, "could not check redis maxmemory-policy: make sure it is noeviction (docs/operations.md, \"Redis settings\")",
				slog.String("addr", c.Options().Addr), slog.String("error", err.Error()))
			return nil
		}
		for line := range strings.SplitSeq(info, "\n") {
			policy, ok := strings.CutPrefix(strings.TrimSpace(line), "maxmemory_policy:")
			if ok && policy != "noeviction" {
				logger.WarnContext(ctx, "redis maxmemory-policy is not noeviction: at maxmemory redis drops queued tasks and fair-dispatch state without a word; set maxmemory-policy noeviction (docs/operations.md, \"Redis settings\")",
					slog.String("addr", c.Options().Addr), slog.String("maxmemory_policy", policy))
			}
		}
		return nil
	}
	switch c := rc.(type) {
	case *redis.Client:
		_ = check(ctx, c)
	case *redis.ClusterClient:
		_ = c.ForEachMaster(ctx, check)
	}
}

// Layout is the queue layout of cfg (QUEUE_SHARDS, QUEUE_SHARDS_SERVED),
// for Open and for a command that needs the queues without a backend.
func Layout(cfg config.Config) (tasks.Layout, error) {
	// 0 means one shard (config.Config documents it), as in a config
	// built as a literal.
	layout, err := tasks.NewLayout(max(cfg.QueueShards, 1), cfg.QueueShardsServed)
	if err != nil {
		return tasks.Layout{}, fmt.Errorf("QUEUE_SHARDS: %w", err)
	}
	return layout, nil
}

// OpenRedis parses REDIS_URL, makes the client and pings it, for Open and
// for a command that needs Redis alone. The caller closes the client; on
// error nothing is left open.
func OpenRedis(ctx context.Context, cfg config.Config) (asynq.RedisConnOpt, redis.UniversalClient, error) {
	return openRedis(ctx, cfg, false)
}

// openRedis is OpenRedis, with a client that ends commands at their
// context's deadline when contextTimeouts is set (Options.ContextTimeouts);
// the option returned is REDIS_URL's as parsed, without it.
func openRedis(ctx context.Context, cfg config.Config, contextTimeouts bool) (asynq.RedisConnOpt, redis.UniversalClient, error) {
	connOpt, err := cfg.RedisConnOpt()
	if err != nil {
		return nil, nil, err
	}
	clientOpt := connOpt
	if contextTimeouts {
		clientOpt = config.WithContextTimeouts(connOpt)
	}
	rc, ok := clientOpt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return nil, nil, fmt.Errorf("REDIS_URL: unsupported redis connection %T", connOpt)
	}
	pctx, cancel := context.WithTimeout(ctx, startupPingTimeout)
	defer cancel()
	if err := rc.Ping(pctx).Err(); err != nil {
		_ = rc.Close()
		if !config.RedisUsesTLS(connOpt) && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
			// A TLS port closes a plain connection without a word.
			return nil, nil, fmt.Errorf("connect to redis: %w (a server that takes TLS connections only closes plain ones: use rediss://, rediss-cluster:// or rediss-sentinel://)", err)
		}
		return nil, nil, fmt.Errorf("connect to redis: %w", err)
	}
	return connOpt, rc, nil
}

// openPools opens the application pool and, when MIGRATIONS_DATABASE_URL
// differs, the schema pool, and checks that the database answers.
func (b *Backend) openPools(ctx context.Context, cfg config.Config, logger *slog.Logger) error {
	if cfg.DatabaseURL == "" {
		return errors.New("DATABASE_URL: required")
	}
	// The connections that run tenants' units of work (the lanes, or this
	// pool without them) stay open with DB_KEEP_CONNS.
	var keep int32
	if cfg.DBKeepConns {
		keep = int32(cfg.DBMaxConns)
	}
	mainOpts := schema.PoolOptions{MaxConns: int32(cfg.DBMaxConns), Logger: logger}
	if cfg.DBPoolLanes <= 1 {
		mainOpts.MinConns = keep
	}
	pool, err := schema.NewPool(ctx, cfg.DatabaseURL, mainOpts)
	if err != nil {
		return fmt.Errorf("open database (DATABASE_URL): %w", err)
	}
	b.Pool, b.SchemaPool = pool, pool
	b.closers = append(b.closers, func() error { pool.Close(); return nil })
	pctx, cancel := context.WithTimeout(ctx, startupPingTimeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		return fmt.Errorf("connect to database: %w", err)
	}
	if err := schema.CheckEncoding(pctx, pool); err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	if cfg.DBPoolLanes > 1 {
		lanes, err := schema.NewLanes(ctx, cfg.DatabaseURL, cfg.DBPoolLanes, schema.PoolOptions{MaxConns: int32(cfg.DBMaxConns), MinConns: keep, Logger: logger})
		if err != nil {
			return fmt.Errorf("open database lanes (DATABASE_URL, DB_POOL_LANES): %w", err)
		}
		b.Lanes = lanes
		b.closers = append(b.closers, func() error { lanes.Close(); return nil })
	}
	if cfg.MigrationsDatabaseURL == "" || cfg.MigrationsDatabaseURL == cfg.DatabaseURL {
		return nil
	}
	// tenant:migrate and tenant:destroy tasks hold one connection each.
	schemaPool, err := schema.NewPool(ctx, cfg.MigrationsDatabaseURL, schema.PoolOptions{MaxConns: int32(cfg.WorkerConcurrency + 1), Logger: logger})
	if err != nil {
		return fmt.Errorf("open database (MIGRATIONS_DATABASE_URL): %w", err)
	}
	b.SchemaPool = schemaPool
	b.closers = append(b.closers, func() error { schemaPool.Close(); return nil })
	return nil
}

// autoPipeliner is what go-redis clients that can autopipeline have in
// common (*redis.Client, *redis.ClusterClient, *redis.Ring).
type autoPipeliner interface {
	AutoPipeline() (*redis.AutoPipeliner, error)
}

// autoPipeline returns rc's blocking autopipeliner: a drop-in client whose
// commands, issued concurrently by many requests, are sent to Redis in
// shared pipelines (go-redis batches whatever is queued while the previous
// batch is on the wire, so a lone request is sent at once). It returns nil
// for a client that cannot autopipeline.
func autoPipeline(rc redis.UniversalClient) (*redis.AutoPipeliner, error) {
	c, ok := rc.(autoPipeliner)
	if !ok {
		return nil, nil
	}
	ap, err := c.AutoPipeline()
	if err != nil {
		return nil, fmt.Errorf("redis autopipelining: %w", err)
	}
	return ap, nil
}

// Close releases what Open built, in reverse order.
func (b *Backend) Close() error {
	var errs []error
	for i := len(b.closers) - 1; i >= 0; i-- {
		errs = append(errs, b.closers[i]())
	}
	b.closers = nil
	return errors.Join(errs...)
}
