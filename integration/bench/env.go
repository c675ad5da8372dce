package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/config"
	"github.com/invoicing/tenantworker/internal/pgserver"
	"github.com/invoicing/tenantworker/internal/redisserver"
)

// Module paths of the binaries the end-to-end scenarios run.
const (
	workerPkg  = "github.com/invoicing/tenantworker/cmd/worker"
	enqueuePkg = "github.com/invoicing/tenantworker/cmd/enqueue"
)

// postgresMaxConnections leaves room for the bench's pools, a worker and
// the enqueue service at once.
const postgresMaxConnections = 200

// env is what every scenario runs on: one Redis, one PostgreSQL server
// (databases created per scenario group), a scratch directory and the
// built binaries.
type env struct {
	dir      string // scratch directory, removed by close
	logger   *slog.Logger
	redisURL string
	redisOpt asynq.RedisConnOpt
	rdb      redis.UniversalClient // *redis.ClusterClient with a redis[s]-cluster:// REDIS_URL
	redis    *redisserver.Server   // nil with REDIS_URL

	pg       *pgserver.Server // nil with DATABASE_URL
	adminURL string           // where CREATE DATABASE runs
	suffix   string           // makes database names unique per run

	mu  sync.Mutex
	dbs []string // created databases, dropped by close

	builds   map[string]*buildResult
	buildsMu sync.Mutex

	redisVersion, postgresVersion string
}

// buildResult is one binary, built once.
type buildResult struct {
	once sync.Once
	path string
	err  error
}

// openEnv starts or connects to Redis and PostgreSQL.
func openEnv(ctx context.Context, logger *slog.Logger, workerBin, enqueueBin string) (_ *env, err error) {
	dir, err := os.MkdirTemp("", "tenantworker-bench-")
	if err != nil {
		return nil, fmt.Errorf("scratch directory: %w", err)
	}
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	e := &env{dir: dir, logger: logger, suffix: hex.EncodeToString(suffix[:]), builds: map[string]*buildResult{}}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	for pkg, bin := range map[string]string{workerPkg: workerBin, enqueuePkg: enqueueBin} {
		if bin != "" {
			r := &buildResult{path: bin}
			r.once.Do(func() {})
			e.builds[pkg] = r
		}
	}

	e.redisURL = os.Getenv("REDIS_URL")
	if e.redisURL == "" {
		if e.redis, err = startRedis(ctx, dir); err != nil {
			return nil, err
		}
		e.redisURL = e.redis.URL()
	}
	if e.redisOpt, err = config.ParseRedisURL(e.redisURL); err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	rc, ok := e.redisOpt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return nil, fmt.Errorf("REDIS_URL: unsupported redis connection %T", e.redisOpt)
	}
	e.rdb = rc
	if err := e.rdb.Ping(ctx).Err(); err != nil {
		// Not the URL: it may hold a password.
		return nil, fmt.Errorf("connect to redis (REDIS_URL): %w", err)
	}
	if e.redis == nil {
		n, err := e.rdb.DBSize(ctx).Result()
		if err != nil {
			return nil, fmt.Errorf("redis DBSIZE: %w", err)
		}
		if n > 0 {
			return nil, errEmptyOnly
		}
	}
	if info, err := e.rdb.InfoMap(ctx, "server").Result(); err == nil {
		e.redisVersion = info["Server"]["redis_version"]
	}

	e.adminURL = os.Getenv("DATABASE_URL")
	if e.adminURL == "" {
		pgRoot := filepath.Join(os.TempDir(), "tenantworker-bench-pg")
		if err := os.MkdirAll(pgRoot, 0o755); err != nil {
			return nil, fmt.Errorf("postgres root: %w", err)
		}
		for _, d := range pgserver.RemoveStale(pgRoot) {
			logger.Info("removed a postgres directory left by an earlier killed run", "dir", d)
		}
		opts := pgserver.Options{TempRoot: pgRoot, MaxConnections: postgresMaxConnections, Logger: logger}
		e.pg, err = pgserver.Start(ctx, opts)
		if errors.Is(err, pgserver.ErrDirUnreachable) {
			opts.TempRoot = ""
			e.pg, err = pgserver.Start(ctx, opts)
		}
		if err != nil {
			return nil, fmt.Errorf("throwaway postgres: %w", err)
		}
		e.adminURL = e.pg.URL()
	}
	conn, err := pgx.Connect(ctx, e.adminURL)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_ = conn.QueryRow(ctx, "SHOW server_version").Scan(&e.postgresVersion)
	return e, nil
}

// createDatabase creates an empty database for a scenario group and returns
// its URL.
func (e *env) createDatabase(ctx context.Context, group string) (string, error) {
	name := "bench_" + group + "_" + e.suffix
	conn, err := pgx.Connect(ctx, e.adminURL)
	if err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE template0"); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	e.mu.Lock()
	e.dbs = append(e.dbs, name)
	e.mu.Unlock()
	u, err := url.Parse(e.adminURL)
	if err != nil {
		return "", fmt.Errorf("DATABASE_URL: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// flushRedis empties the Redis database between scenarios.
func (e *env) flushRedis(ctx context.Context) error {
	if err := flushDB(ctx, e.rdb); err != nil {
		return fmt.Errorf("flush redis: %w", err)
	}
	return nil
}

// flushDB empties the database: every master's on a cluster.
func flushDB(ctx context.Context, rdb redis.UniversalClient) error {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return m.FlushDB(ctx).Err() })
	}
	return rdb.FlushDB(ctx).Err()
}

// binary returns the path of the built main package pkg, building it the
// first time (go build, from the current directory's module).
func (e *env) binary(ctx context.Context, pkg string) (string, error) {
	e.buildsMu.Lock()
	r, ok := e.builds[pkg]
	if !ok {
		r = &buildResult{}
		e.builds[pkg] = r
	}
	e.buildsMu.Unlock()
	r.once.Do(func() {
		out := filepath.Join(e.dir, "bin", filepath.Base(pkg))
		// Built as the README builds them (go build, the environment's
		// CGO_ENABLED) and as internal/testenv's BuildBinary does, so that
		// the tests' builds share one build cache entry per package.
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
		msg, err := cmd.CombinedOutput()
		if err != nil {
			r.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, strings.TrimSpace(string(msg)))
			return
		}
		r.path = out
	})
	return r.path, r.err
}

// close drops the databases it created, stops what it started and removes
// the scratch directory. It runs after cancellation too.
func (e *env) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if e.rdb != nil {
		if e.redis == nil {
			_ = flushDB(ctx, e.rdb) // external Redis: leave it empty as found
		}
		_ = e.rdb.Close()
	}
	if e.redis != nil {
		if err := e.redis.Stop(ctx); err != nil {
			e.logger.Warn("stop redis", "error", err)
		}
	}
	if e.pg != nil {
		if err := e.pg.Stop(ctx); err != nil {
			e.logger.Warn("stop postgres", "error", err)
		}
		_ = os.Remove(filepath.Dir(e.pg.Dir())) // our pg root, only if now empty
	} else if len(e.dbs) > 0 {
		if conn, err := pgx.Connect(ctx, e.adminURL); err == nil {
			for _, name := range e.dbs {
				if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
					e.logger.Warn("drop database", "name", name, "error", err)
				}
			}
			_ = conn.Close(ctx)
		}
	}
	if e.dir != "" {
		_ = os.RemoveAll(e.dir)
	}
}
