package storage_test

import (
	"log/slog"
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
	setMaxmemory := func(v string) func() {
		return func() {
			if err := admin.ConfigSet(ctx, "maxmemory", v).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	checkOutageLoggedOnce(t, c, &logs, tn.ID, "fill", setMaxmemory("1"), setMaxmemory("0"))
}
