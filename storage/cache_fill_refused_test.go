package storage_test

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestCacheFillsRefusedByRedisLogOncePerBackoff: a Redis that answers
// reads and refuses writes (at maxmemory with noeviction, a replica, a
// master short of replicas) refuses every fill of a lookup that missed.
// Such failures are logged once, as failed reads are, not once per
// lookup: every miss logged a warning, on each instance, for as long as
// Redis refused, one per key each LocalTTL (TestCacheLogsRefusedFillsOnce
// covers fills tried again after each RedisBackoff).
func TestCacheFillsRefusedByRedisLogOncePerBackoff(t *testing.T) {
	t.Parallel()
	server := testenv.StartRedis(t, testenv.RedisOptions{})
	env := newCacheEnv(t, server.Addr())
	ctx := t.Context()
	var logs testenv.LogBuffer
	// A backoff longer than the test: one window, whatever the machine's
	// speed.
	c := env.cache(t, storage.CacheOptions{LocalTTL: -1, RedisBackoff: time.Hour,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	var tenants []tenantctx.Tenant
	for i := range 5 {
		tenants = append(tenants, mustCreateTenant(t, ctx, c, fmt.Sprintf("refused%d", i), tenantctx.StatusActive))
	}
	admin := redis.NewClient(&redis.Options{Addr: server.Addr()})
	defer admin.Close()
	if err := admin.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	defer admin.ConfigSet(ctx, "maxmemory", "0")
	for range 3 {
		for _, tn := range tenants {
			if got, err := c.TenantByID(ctx, tn.ID); err != nil || got.ID != tn.ID {
				t.Fatalf("TenantByID(%s) with Redis refusing writes = %v, %v", tn.ID, got.ID, err)
			}
			if _, err := c.TenantBySlug(ctx, tn.Slug); err != nil {
				t.Fatalf("TenantBySlug(%s) with Redis refusing writes: %v", tn.Slug, err)
			}
		}
	}
	out := logs.String()
	if !strings.Contains(out, "OOM") {
		t.Fatalf("no refused fill logged:\n%s", out)
	}
	if n := strings.Count(out, "tenant cache: redis fill failed"); n != 1 {
		t.Fatalf("30 lookups whose fills Redis refused, within one backoff: %d warnings, want 1:\n%s", n, out)
	}
}
