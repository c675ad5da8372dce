package enqueueapp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/schema"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
)

// Deps are the connections and stores the service and the CLI work with.
// Close releases what Open built (not what Options handed in).
type Deps struct {
	Pool         *pgxpool.Pool
	Catalog      storage.Catalog
	Postgres     *storage.Postgres // nil when Options.Catalog was given
	RedisConnOpt asynq.RedisConnOpt
	Redis        redis.UniversalClient
	Client       *asynq.Client // enqueues through Redis autopipelining unless REDIS_AUTOPIPELINE=false
	Inspector    *asynq.Inspector
	Enqueuer     *tasks.Enqueuer

	closers []func() error
}

// Open builds Deps from cfg, using whatever opts provides instead.
func Open(ctx context.Context, cfg config.Config, logger *slog.Logger, opts Options) (_ *Deps, err error) {
	d := &Deps{}
	defer func() {
		if err != nil {
			_ = d.Close()
		}
	}()

	d.RedisConnOpt = opts.RedisConnOpt
	if d.RedisConnOpt == nil {
		if d.RedisConnOpt, err = cfg.RedisConnOpt(); err != nil {
			return nil, err
		}
	}
	d.Redis = opts.Redis
	if d.Redis == nil {
		rc, ok := d.RedisConnOpt.MakeRedisClient().(redis.UniversalClient)
		if !ok {
			return nil, fmt.Errorf("unsupported redis connection %T", d.RedisConnOpt)
		}
		d.Redis = rc
		d.closers = append(d.closers, rc.Close)
	}
	if err := d.Redis.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("connect to redis: %w", err)
	}

	d.Pool = opts.Pool
	if d.Pool == nil {
		if cfg.DatabaseURL == "" {
			return nil, errors.New("DATABASE_URL is not set")
		}
		pool, err := schema.NewPool(ctx, cfg.DatabaseURL, schema.PoolOptions{MaxConns: int32(min(cfg.DBMaxConns, math.MaxInt32)), Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("open database: %w", err)
		}
		d.Pool = pool
		d.closers = append(d.closers, func() error { pool.Close(); return nil })
	}

	d.Catalog = opts.Catalog
	if d.Catalog == nil {
		if err := storage.MigrateCatalog(ctx, d.Pool, logger); err != nil {
			return nil, fmt.Errorf("open catalog: %w", err)
		}
		pg := storage.NewPostgres(d.Pool)
		d.Postgres = pg
		cache := storage.NewCache(pg, d.Redis, storage.CacheOptions{RedisTTL: cfg.TenantCacheTTL, Logger: logger})
		d.Catalog = cache
		d.closers = append(d.closers, cache.Close)
	}

	enqueueRedis := d.Redis
	if cfg.RedisAutoPipeline {
		if enqueueRedis, err = autoPipeline(d.Redis); err != nil {
			return nil, err
		}
		if ap, ok := enqueueRedis.(*redis.AutoPipeliner); ok {
			d.closers = append(d.closers, ap.Close)
		}
	}
	d.Client = asynq.NewClientFromRedisClient(enqueueRedis)
	d.Inspector = asynq.NewInspectorFromRedisClient(d.Redis)
	d.Enqueuer = tasks.NewEnqueuer(d.Client, d.Inspector, logger)
	return d, nil
}

// autoPipeliner is what go-redis clients that can autopipeline have in
// common (*redis.Client, *redis.ClusterClient, *redis.Ring).
type autoPipeliner interface {
	AutoPipeline() (*redis.AutoPipeliner, error)
}

// autoPipeline returns rc's blocking autopipeliner: a drop-in client whose
// commands, issued concurrently by many requests, are sent to Redis in
// shared pipelines (go-redis batches whatever is queued while the previous
// batch is on the wire, so a lone request is sent at once). A client that
// cannot autopipeline is returned as it is.
func autoPipeline(rc redis.UniversalClient) (redis.UniversalClient, error) {
	c, ok := rc.(autoPipeliner)
	if !ok {
		return rc, nil
	}
	ap, err := c.AutoPipeline()
	if err != nil {
		return nil, fmt.Errorf("redis autopipelining: %w", err)
	}
	return ap, nil
}

// Close releases what Open built, in reverse order.
func (d *Deps) Close() error {
	var errs []error
	for i := len(d.closers) - 1; i >= 0; i-- {
		errs = append(errs, d.closers[i]())
	}
	d.closers = nil
	return errors.Join(errs...)
}
