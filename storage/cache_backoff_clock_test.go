package storage_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestCacheRedisBackoffEndsOnTheMonotonicClock: after a failed Redis read
// the cache skips Redis for RedisBackoff as measured on the monotonic
// clock (faked here; the real one is what time.Since reads), which a step
// of the wall clock does not move. The backoff ran until a wall-clock
// instant (UnixNano): an NTP step back of an hour right after a Redis
// error made every lookup skip Redis and read the catalog for that hour,
// with nothing logged after the first failure.
func TestCacheRedisBackoffEndsOnTheMonotonicClock(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	server := testenv.StartRedis(t, testenv.RedisOptions{})
	rdb := redis.NewClient(&redis.Options{Addr: server.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	env := newCacheEnvOn(rdb)
	c := env.cache(t, storage.CacheOptions{LocalTTL: -1, RedisBackoff: time.Hour})
	var elapsed atomic.Int64 // the monotonic clock, in ns
	c.SetMonotonicClock(func() time.Duration { return time.Duration(elapsed.Load()) })
	tn := mustCreateTenant(t, ctx, c, "backoff-clock", tenantctx.StatusActive)
	if _, err := c.TenantByID(ctx, tn.ID); err != nil { // fills Redis
		t.Fatal(err)
	}

	server.Stop(t)
	errs := c.Stats().RedisErrors
	if _, err := c.TenantByID(ctx, tn.ID); err != nil {
		t.Fatalf("lookup with Redis down: %v", err)
	}
	if c.Stats().RedisErrors == errs {
		t.Fatal("lookup with Redis down: no Redis error counted")
	}
	server.Start(t)

	hits := c.Stats().RedisHits
	elapsed.Store(int64(time.Hour - time.Millisecond))
	if _, err := c.TenantByID(ctx, tn.ID); err != nil {
		t.Fatal(err)
	}
	if c.Stats().RedisHits != hits {
		t.Fatal("lookup within the backoff read Redis, want it skipped")
	}
	elapsed.Store(int64(time.Hour))
	// The first lookup reads Redis, which lost its data with its restart,
	// and fills it; the second is answered by it.
	for range 2 {
		if _, err := c.TenantByID(ctx, tn.ID); err != nil {
			t.Fatal(err)
		}
	}
	if c.Stats().RedisHits == hits {
		t.Fatalf("lookup an hour (RedisBackoff) after the failed read on the monotonic clock skipped Redis, want it answered by Redis; stats %+v", c.Stats())
	}
}
