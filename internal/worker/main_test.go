package worker_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/internal/worker"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tasks"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestMain is the one TestMain of package worker: testenv stops the
// PostgreSQL and Redis servers the tests started, then goleak checks that
// no asynq server, Redis client or pool goroutine outlived its test.
func TestMain(m *testing.M) {
	os.Exit(testenv.MainLeakCheck(m))
}

// testContext returns a context cancelled at the end of the test and after
// three minutes at most: a bound for a test that hangs, not a measurement.
// The heaviest tests (an invoice of four 300 MB lines, a render of 10,000
// pages) took over a minute with the race detector on a loaded 2-CPU
// machine, and failed with "context deadline exceeded" under a one-minute
// bound.
func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newRedis returns the connection options of a dedicated real redis-server.
func newRedis(t testing.TB) asynq.RedisClientOpt {
	return asynq.RedisClientOpt{Addr: testenv.Redis(t)}
}

// newRedisClient returns the connection options of a dedicated real
// redis-server and a go-redis client of it, closed at the end of the test.
func newRedisClient(t testing.TB) (asynq.RedisClientOpt, *redis.Client) {
	opt := newRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: opt.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	return opt, rdb
}

// newTestEnqueuer returns an Enqueuer (and its inspector) on redis, closed
// at the end of the test.
func newTestEnqueuer(t testing.TB, redis asynq.RedisClientOpt) (*tasks.Enqueuer, *asynq.Inspector) {
	client := asynq.NewClient(redis)
	inspector := asynq.NewInspector(redis)
	t.Cleanup(func() {
		_ = client.Close()
		_ = inspector.Close()
	})
	return tasks.NewEnqueuer(client, inspector, discardLogger()), inspector
}

// startServer runs an asynq server with worker.ServerConfig(opts) and
// handler in-process until the end of the test, and returns it so a test
// can shut it down earlier.
func startServer(t testing.TB, redis asynq.RedisClientOpt, handler asynq.Handler, opts worker.ServerOptions) *asynq.Server {
	return runServer(t, asynq.NewServer(redis, testServerConfig(opts)), handler)
}

// startServerOn is startServer on a Redis client the test made (one with
// hooks, or shared with the test's own checks); the client stays open.
func startServerOn(t testing.TB, rdb redis.UniversalClient, handler asynq.Handler, opts worker.ServerOptions) *asynq.Server {
	return runServer(t, asynq.NewServerFromRedisClient(rdb, testServerConfig(opts)), handler)
}

// testServerConfig is worker.ServerConfig(opts) with the tests' defaults:
// a discarding logger and a 5 s shutdown.
func testServerConfig(opts worker.ServerOptions) asynq.Config {
	if opts.Logger == nil {
		opts.Logger = discardLogger()
	}
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 5 * time.Second
	}
	return worker.ServerConfig(opts)
}

func runServer(t testing.TB, srv *asynq.Server, handler asynq.Handler) *asynq.Server {
	t.Helper()
	if err := srv.Start(handler); err != nil {
		t.Fatalf("start asynq server: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// addTenant creates a tenant with the given slug in catalog and moves it to
// status along the lifecycle.
func addTenant(t testing.TB, catalog storage.Catalog, slug string, status tenantctx.Status) tenantctx.Tenant {
	t.Helper()
	ctx := context.Background()
	tn, err := tenantctx.New(slug, slug, "pro")
	if err != nil {
		t.Fatal(err)
	}
	tn, err = catalog.CreateTenant(ctx, tn)
	if err != nil {
		t.Fatal(err)
	}
	path := map[tenantctx.Status][]tenantctx.Status{
		tenantctx.StatusProvisioning: nil,
		tenantctx.StatusActive:       {tenantctx.StatusActive},
		tenantctx.StatusSuspended:    {tenantctx.StatusActive, tenantctx.StatusSuspended},
		tenantctx.StatusDeleting:     {tenantctx.StatusActive, tenantctx.StatusDeleting},
	}[status]
	for _, s := range path {
		if tn, err = catalog.SetStatus(ctx, tn.ID, s); err != nil {
			t.Fatal(err)
		}
	}
	return tn
}
