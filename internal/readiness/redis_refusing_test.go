package readiness_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/readiness"
	"github.com/invoicing/tenantworker/internal/testenv"
)

// TestRedisCheckFailsWhileRedisRefusesWrites: a Redis that answers PING
// but refuses every write (a demoted master still reached, READONLY; at
// maxmemory with noeviction, OOM; a master whose min-replicas-to-write is
// not met, NOREPLICAS) fails the check with its reply, as the enqueue
// service answers 503 to every enqueue and no worker can take a task; the
// check passes again once Redis takes writes.
func TestRedisCheckFailsWhileRedisRefusesWrites(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, reply   string
		refuse, allow func(context.Context, *redis.Client) error
	}{
		{"demoted master", "READONLY ",
			// Port 1 on the loopback: nothing listens, so the replica
			// stays read-only.
			func(ctx context.Context, rdb *redis.Client) error { return rdb.ReplicaOf(ctx, "127.0.0.1", "1").Err() },
			func(ctx context.Context, rdb *redis.Client) error { return rdb.ReplicaOf(ctx, "NO", "ONE").Err() }},
		{"maxmemory", "OOM ",
			func(ctx context.Context, rdb *redis.Client) error {
				if err := rdb.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
					return err
				}
				return rdb.ConfigSet(ctx, "maxmemory", "1").Err()
			},
			func(ctx context.Context, rdb *redis.Client) error { return rdb.ConfigSet(ctx, "maxmemory", "0").Err() }},
		{"min-replicas-to-write", "NOREPLICAS ",
			func(ctx context.Context, rdb *redis.Client) error {
				return rdb.ConfigSet(ctx, "min-replicas-to-write", "1").Err()
			},
			func(ctx context.Context, rdb *redis.Client) error {
				return rdb.ConfigSet(ctx, "min-replicas-to-write", "0").Err()
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
			t.Cleanup(func() { _ = rdb.Close() })
			check := readiness.Redis(rdb)
			run := func() error {
				return readiness.Run(ctx, map[string]readiness.Check{"redis": check}, 2*time.Second)["redis"]
			}
			if err := run(); err != nil {
				t.Fatalf("check of a Redis taking writes: %v", err)
			}
			if err := c.refuse(ctx, rdb); err != nil {
				t.Fatal(err)
			}
			if err := rdb.Ping(ctx).Err(); err != nil {
				t.Fatalf("PING of the Redis refusing writes: %v, want an answer", err)
			}
			if err := rdb.Set(ctx, "probe", "1", 0).Err(); err == nil || !strings.HasPrefix(err.Error(), c.reply) {
				t.Fatalf("a write to the Redis refusing writes: %v, want %s", err, c.reply)
			}
			if err := run(); err == nil || !strings.Contains(err.Error(), c.reply) {
				t.Errorf("check of the Redis refusing writes = %v, want its %s reply", err, strings.TrimSpace(c.reply))
			}
			if err := c.allow(ctx, rdb); err != nil {
				t.Fatal(err)
			}
			if err := run(); err != nil {
				t.Errorf("check once Redis takes writes again: %v", err)
			}
			// The check wrote nothing.
			if n, err := rdb.DBSize(ctx).Result(); err != nil || n != 0 {
				t.Errorf("keys after the checks: %d, %v; want none", n, err)
			}
		})
	}
}
