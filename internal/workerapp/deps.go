package workerapp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/mailer"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
)

// deps are what the worker runs on; close releases what open built.
type deps struct {
	redis          redis.UniversalClient
	pool           *pgxpool.Pool
	migrationsPool *pgxpool.Pool
	catalog        storage.Catalog
	documents      storage.DocumentStore
	mailer         mailer.Mailer
	client         *asynq.Client
	inspector      *asynq.Inspector
	enqueuer       *tasks.Enqueuer
	registry       *prometheus.Registry
	metrics        *tasks.Metrics
	listener       net.Listener

	closers []func() error
}

// open builds the worker's dependencies from cfg, using what opts hands in
// instead. On error it releases whatever it built.
func open(ctx context.Context, cfg config.Config, logger *slog.Logger, opts Options) (_ *deps, err error) {
	cfg = cfg.WithDefaults()
	d := &deps{}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.close())
		}
	}()

	// Redis.
	d.redis = opts.Redis
	if d.redis == nil {
		connOpt := opts.RedisConnOpt
		if connOpt == nil {
			if connOpt, err = cfg.RedisConnOpt(); err != nil {
				return nil, err
			}
		}
		rc, ok := connOpt.MakeRedisClient().(redis.UniversalClient)
		if !ok {
			return nil, fmt.Errorf("REDIS_URL: unsupported redis connection %T", connOpt)
		}
		d.redis = rc
		d.closers = append(d.closers, rc.Close)
	}
	if err := d.redis.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("connect to redis: %w", err)
	}

	// PostgreSQL: the application pool and the migrations pool.
	d.pool = opts.Pool
	if d.pool == nil {
		if cfg.DatabaseURL == "" {
			return nil, errors.New("DATABASE_URL: required")
		}
		pool, err := schema.NewPool(ctx, cfg.DatabaseURL, schema.PoolOptions{MaxConns: int32(cfg.DBMaxConns), Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("open database (DATABASE_URL): %w", err)
		}
		d.pool = pool
		d.closers = append(d.closers, func() error { pool.Close(); return nil })
	}
	if err := d.pool.Ping(ctx); err != nil {
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	d.migrationsPool = opts.MigrationsPool
	if d.migrationsPool == nil {
		d.migrationsPool = d.pool
		if opts.Pool == nil && cfg.MigrationsDatabaseURL != "" && cfg.MigrationsDatabaseURL != cfg.DatabaseURL {
			// tenant:migrate tasks hold one connection each.
			pool, err := schema.NewPool(ctx, cfg.MigrationsDatabaseURL, schema.PoolOptions{MaxConns: int32(cfg.WorkerConcurrency + 1), Logger: logger})
			if err != nil {
				return nil, fmt.Errorf("open database (MIGRATIONS_DATABASE_URL): %w", err)
			}
			d.migrationsPool = pool
			d.closers = append(d.closers, func() error { pool.Close(); return nil })
		}
	}

	// Catalog: Postgres (its own migrations run over the migrations pool,
	// whose session locks survive; queries go through the app pool), then
	// the Redis cache in front.
	backend := opts.Catalog
	if backend == nil {
		if err := storage.MigrateCatalog(ctx, d.migrationsPool, logger); err != nil {
			return nil, fmt.Errorf("migrate catalog: %w", err)
		}
		backend = storage.NewPostgres(d.pool)
	}
	cache := storage.NewCache(backend, d.redis, storage.CacheOptions{RedisTTL: cfg.TenantCacheTTL, Logger: logger})
	d.closers = append(d.closers, cache.Close)
	d.catalog = cache

	// Documents and mail.
	d.documents = opts.Documents
	if d.documents == nil {
		fs, err := storage.NewFS(cfg.DocumentsDir)
		if err != nil {
			return nil, fmt.Errorf("DOCUMENTS_DIR: %w", err)
		}
		d.documents = fs
	}
	d.mailer = opts.Mailer
	if d.mailer == nil {
		m, err := mailer.FromConfig(cfg.SMTPURL, cfg.OutboxDir)
		if err != nil {
			return nil, fmt.Errorf("mailer (SMTP_URL/OUTBOX_DIR): %w", err)
		}
		d.mailer = m
	}

	// Enqueuer.
	d.client = asynq.NewClientFromRedisClient(d.redis)
	d.inspector = asynq.NewInspectorFromRedisClient(d.redis)
	d.enqueuer = tasks.NewEnqueuer(d.client, d.inspector, logger)

	// Metrics.
	d.registry = opts.Registry
	if d.registry == nil {
		d.registry = prometheus.NewRegistry()
		d.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if d.metrics, err = tasks.NewMetrics(d.registry); err != nil {
		return nil, err
	}
	if err := tasks.RegisterQueueMetrics(d.registry, d.inspector); err != nil {
		return nil, err
	}
	if err := tasks.RegisterCacheMetrics(d.registry, func() (uint64, uint64) {
		s := cache.Stats()
		return uint64(s.LocalHits + s.RedisHits), uint64(s.Misses)
	}); err != nil {
		return nil, err
	}

	// Health server listener, last: a bound port means the worker is up.
	d.listener = opts.Listener
	if d.listener == nil {
		addr := cfg.HTTPAddrOr(config.DefaultWorkerHTTPAddr)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("HTTP_ADDR: %w", err)
		}
		d.listener = ln
	}
	// http.Server.Shutdown closes the listener; closing it again is harmless.
	d.closers = append(d.closers, func() error { _ = d.listener.Close(); return nil })
	return d, nil
}

// close releases what open built, in reverse order. The asynq client and
// inspector share the Redis client and close nothing of their own.
func (d *deps) close() error {
	var errs []error
	for i := len(d.closers) - 1; i >= 0; i-- {
		errs = append(errs, d.closers[i]())
	}
	d.closers = nil
	return errors.Join(errs...)
}
