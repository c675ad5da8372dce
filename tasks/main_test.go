package tasks

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestMain is the one TestMain of package tasks: testenv stops the Redis
// servers the tests started, then goleak checks that no asynq server or
// Redis client goroutine outlived its test.
func TestMain(m *testing.M) {
	os.Exit(testenv.MainLeakCheck(m))
}

// testContext returns a context cancelled at the end of the test and after
// a minute at most.
func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newRedis returns the connection options of a dedicated real redis-server.
func newRedis(t testing.TB) asynq.RedisClientOpt {
	return asynq.RedisClientOpt{Addr: testenv.Redis(t)}
}

// newRedisClient returns the connection options of a dedicated real
// redis-server and a go-redis client on it, closed at the end of the test.
func newRedisClient(t testing.TB) (asynq.RedisClientOpt, *redis.Client) {
	opt := newRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: opt.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	return opt, rdb
}

// newTestEnqueuer returns an Enqueuer (and its inspector) on redis, closed
// at the end of the test.
func newTestEnqueuer(t testing.TB, redis asynq.RedisClientOpt) (*Enqueuer, *asynq.Inspector) {
	client := asynq.NewClient(redis)
	inspector := asynq.NewInspector(redis)
	t.Cleanup(func() {
		_ = client.Close()
		_ = inspector.Close()
	})
	return NewEnqueuer(client, inspector, discardLogger()), inspector
}

// startServer runs a plain asynq server with handler over the queues until
// the end of the test: enough to complete tasks (the worker's own
// configuration is internal/worker's, tested there).
func startServer(t testing.TB, redis asynq.RedisClientOpt, handler asynq.Handler, concurrency int) {
	srv := asynq.NewServer(redis, asynq.Config{
		Concurrency: concurrency, Queues: QueueWeights, ShutdownTimeout: 5 * time.Second,
		DelayedTaskCheckInterval: time.Second, LogLevel: asynq.FatalLevel,
	})
	if err := srv.Start(handler); err != nil {
		t.Fatalf("start asynq server: %v", err)
	}
	t.Cleanup(srv.Shutdown)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
