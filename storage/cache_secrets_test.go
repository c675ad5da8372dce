package storage_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestCacheLogsNoAPIKeyHash: when Redis refuses the cache's commands (its
// password changed under a running process: NOAUTH), the cache's warnings
// name neither a tenant's API key nor its hash, the form the catalog
// stores and the cache indexes by. They named the Redis key
// "key:<sha256 of the key>" of every key looked up, issued or dropped.
func TestCacheLogsNoAPIKeyHash(t *testing.T) {
	t.Parallel()
	server := testenv.StartRedis(t, testenv.RedisOptions{})
	env := newCacheEnv(t, server.Addr())
	ctx := t.Context()
	var logs testenv.LogBuffer
	c := env.cache(t, storage.CacheOptions{LocalTTL: -1, RedisBackoff: -1,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	tn := mustCreateTenant(t, ctx, c, "hashes", tenantctx.StatusActive)

	admin := redis.NewClient(&redis.Options{Addr: server.Addr()})
	defer admin.Close()
	if err := admin.ConfigSet(ctx, "requirepass", "n3w-redis-pass").Err(); err != nil {
		t.Fatal(err)
	}
	// Existing connections stay logged in: drop them, as a restart does.
	if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	_, key, err := c.IssueAPIKey(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.TenantForAPIKey(ctx, key); err != nil || got != tn.ID {
		t.Fatalf("TenantForAPIKey with Redis refusing = %q, %v; want %s", got, err, tn.ID)
	}
	unknown, _ := storage.NewAPIKey()
	_, _ = c.TenantForAPIKey(ctx, unknown)

	out := logs.String()
	if !strings.Contains(out, "NOAUTH") {
		t.Fatalf("no Redis failure logged:\n%s", out)
	}
	for _, k := range []string{key, unknown} {
		h := storage.HashAPIKey(k)
		for _, s := range []string{k, k[:12], h, h[:12]} {
			if strings.Contains(out, s) {
				t.Errorf("the log holds %q (of key %s...):\n%s", s, k[:9], out)
			}
		}
	}
}
