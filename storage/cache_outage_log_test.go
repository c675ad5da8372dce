package storage_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestCacheLogsARedisOutageOnce: while Redis is down, the cache tries it
// again after each RedisBackoff (a second by default) and answers from the
// backend; it logs "redis read failed" once when its reads begin to fail,
// as its doc says (once per outage, not once per lookup), and one line
// when they work again. It logged at every backoff window with a lookup in
// it: a warning a second per process for the whole outage under traffic.
func TestCacheLogsARedisOutageOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	server := testenv.StartRedis(t, testenv.RedisOptions{})
	// No retries: a read fails at once, so many backoff windows pass.
	rdb := redis.NewClient(&redis.Options{Addr: server.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	env := newCacheEnvOn(rdb)
	var logs testenv.LogBuffer
	c := env.cache(t, storage.CacheOptions{LocalTTL: -1, RedisBackoff: 10 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	tn := mustCreateTenant(t, ctx, c, "outage-log", tenantctx.StatusActive)
	if _, err := c.TenantByID(ctx, tn.ID); err != nil {
		t.Fatal(err)
	}

	server.Stop(t)
	errs := c.Stats().RedisErrors
	eventually(t, 30*time.Second, "20 failed Redis reads", func() bool {
		if _, err := c.TenantByID(ctx, tn.ID); err != nil {
			t.Fatalf("lookup with Redis down: %v", err)
		}
		return c.Stats().RedisErrors-errs >= 20
	})
	server.Start(t)
	hits := c.Stats().RedisHits
	eventually(t, time.Minute, "reads from Redis again", func() bool {
		_, _ = c.TenantByID(ctx, tn.ID)
		return c.Stats().RedisHits > hits
	})

	failed, back := 0, 0
	for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		switch msg := rec["msg"].(string); {
		case strings.Contains(msg, "redis read failed"), strings.Contains(msg, "still fail"):
			failed++
		case strings.Contains(msg, "work again"):
			back++
		}
	}
	if failed != 1 || back != 1 {
		t.Errorf("%d lines of failed reads and %d of reads working again for one outage of %d failed reads, want 1 and 1:\n%s",
			failed, back, c.Stats().RedisErrors-errs, logs.String())
	}
}
