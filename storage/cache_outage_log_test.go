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

	checkOutageLoggedOnce(t, c, &logs, tn.ID, "read", func() { server.Stop(t) }, func() { server.Start(t) })
}

// checkOutageLoggedOnce makes the cache's Redis calls of one kind ("read"
// or "fill") fail with fail, looks tenant up until 20 of them failed,
// undoes it with restore, looks up until Redis answers again, and wants one
// line of the failures ("redis <kind> failed", "<kind>s still fail") and
// one of their end ("<kind>s work again") in c's JSON log, logs.
func checkOutageLoggedOnce(t *testing.T, c *storage.Cache, logs *testenv.LogBuffer, tenant, kind string, fail, restore func()) {
	t.Helper()
	ctx := t.Context()
	fail()
	errs := c.Stats().RedisErrors
	eventually(t, 30*time.Second, "20 failed Redis "+kind+"s", func() bool {
		if _, err := c.TenantByID(ctx, tenant); err != nil {
			t.Fatalf("lookup while Redis %ss fail: %v", kind, err)
		}
		return c.Stats().RedisErrors-errs >= 20
	})
	restore()
	hits := c.Stats().RedisHits
	eventually(t, time.Minute, "a lookup answered by Redis again", func() bool {
		_, _ = c.TenantByID(ctx, tenant)
		return c.Stats().RedisHits > hits
	})

	failed, back := 0, 0
	for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		switch msg := rec["msg"].(string); {
		case strings.Contains(msg, "redis "+kind+" failed"), strings.Contains(msg, kind+"s still fail"):
			failed++
		case strings.Contains(msg, kind+"s work again"):
			back++
		}
	}
	if failed != 1 || back != 1 {
		t.Errorf("%d lines of failed %ss and %d of %ss working again for one outage of %d failed calls, want 1 and 1:\n%s",
			failed, kind, back, kind, c.Stats().RedisErrors-errs, logs.String())
	}
}
