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

// TestCacheLogsRefusedFillsOnce: a Redis that answers reads and refuses
// writes (at maxmemory with noeviction, a replica, a master short of
// replicas) can do so for hours. The cache tries a fill again after each
// RedisBackoff (a second by default); it logs "redis fill failed" once
// when fills begin to fail, as it logs failing reads (once per outage, not
// once per backoff), and one line when they work again. It logged at every
// backoff window with a miss in it: a warning a second per process for as
// long as Redis refused writes.
func TestCacheLogsRefusedFillsOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	server := testenv.StartRedis(t, testenv.RedisOptions{})
	env := newCacheEnv(t, server.Addr())
	var logs testenv.LogBuffer
	c := env.cache(t, storage.CacheOptions{LocalTTL: -1, RedisBackoff: 10 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	tn := mustCreateTenant(t, ctx, c, "fill-outage-log", tenantctx.StatusActive)

	admin := redis.NewClient(&redis.Options{Addr: server.Addr()})
	defer admin.Close()
	if err := admin.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	errs := c.Stats().RedisErrors
	eventually(t, 30*time.Second, "20 refused fills", func() bool {
		if _, err := c.TenantByID(ctx, tn.ID); err != nil {
			t.Fatalf("lookup with Redis refusing writes: %v", err)
		}
		return c.Stats().RedisErrors-errs >= 20
	})
	if err := admin.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	hits := c.Stats().RedisHits
	eventually(t, time.Minute, "a lookup answered by a fill", func() bool {
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
		case strings.Contains(msg, "redis fill failed"), strings.Contains(msg, "fills still fail"):
			failed++
		case strings.Contains(msg, "fills work again"):
			back++
		}
	}
	if failed != 1 || back != 1 {
		t.Errorf("%d lines of refused fills and %d of fills working again for %d refused fills, want 1 and 1:\n%s",
			failed, back, c.Stats().RedisErrors-errs, logs.String())
	}
}
