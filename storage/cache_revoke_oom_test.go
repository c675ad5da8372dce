package storage_test

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestCacheRevocationAtMaxmemoryDropsTheCachedKeys: at maxmemory (policy
// noeviction) Redis refuses a script whose first write may grow memory,
// and lets one through whose first write deletes. A revocation deletes the
// tenant's cached keys, and must do so at maxmemory too: its script bumped
// the keys' guard first, so Redis refused the whole of it, the revocation
// answered ErrInvalidationFailed, and the revoked key stayed in Redis,
// accepted through every instance (this one too, past its local layer)
// until its entry expired (RedisTTL, 5 minutes by default).
func TestCacheRevocationAtMaxmemoryDropsTheCachedKeys(t *testing.T) {
	t.Parallel()
	server := testenv.StartRedis(t, testenv.RedisOptions{})
	env := newCacheEnv(t, server.Addr())
	ctx := t.Context()
	a := env.cache(t, storage.CacheOptions{LocalTTL: -1})
	b := env.cache(t, storage.CacheOptions{LocalTTL: -1}) // every lookup reads Redis
	tn := mustCreateTenant(t, ctx, a, "revoked-at-maxmemory", tenantctx.StatusActive)
	k, key, err := a.IssueAPIKey(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*storage.Cache{a, b} {
		if id, err := c.TenantForAPIKey(ctx, key); err != nil || id != tn.ID {
			t.Fatalf("warm the cache: %q, %v", id, err)
		}
	}
	admin := redis.NewClient(&redis.Options{Addr: server.Addr()})
	defer admin.Close()
	if err := admin.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	defer admin.ConfigSet(ctx, "maxmemory", "0")

	if _, err := a.RevokeAPIKey(ctx, tn.ID, k.ID); err != nil {
		t.Errorf("RevokeAPIKey at maxmemory: %v, want its invalidation applied", err)
	}
	for name, c := range map[string]*storage.Cache{"A (revoking)": a, "B": b} {
		if id, err := c.TenantForAPIKey(ctx, key); !isNotFound(err) {
			t.Errorf("the revoked key through %s at maxmemory: %q, %v; want ErrNotFound", name, id, err)
		}
	}
}
