package storage_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/storage/storagetest"
	"github.com/invoicing/tenantworker/tenantctx"
)

// propagation is how long the tests wait for another instance to notice a
// write. Invalidation messages normally arrive within milliseconds; the
// bound only names the failure, and is generous because on a loaded
// machine under -race pub/sub delivery can take seconds. It stays well
// under longLocal's minute, so an instance that sees the write in time
// saw it through an invalidation, not through its local entry expiring.
const propagation = 20 * time.Second

// prefixSeq makes Redis key prefixes unique within the test binary.
var prefixSeq atomic.Int64

// cacheEnv is one test's Redis client, key prefix and backend: every Cache
// it makes shares them, as processes of one deployment do.
type cacheEnv struct {
	rdb     redis.UniversalClient
	prefix  string
	backend *memstore.Catalog
}

// newCacheEnv connects to the Redis at addr with a fresh key prefix and an
// empty in-memory backend (memstore).
func newCacheEnv(t testing.TB, addr string) cacheEnv {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() })
	return newCacheEnvOn(rdb)
}

// newCacheEnvOn is newCacheEnv on a client of the caller's (a cluster
// client, say).
func newCacheEnvOn(rdb redis.UniversalClient) cacheEnv {
	return cacheEnv{
		rdb:     rdb,
		prefix:  fmt.Sprintf("tc%d:", prefixSeq.Add(1)),
		backend: memstore.New(),
	}
}

// cache returns a new instance (think: another process) in front of the
// shared backend, subscribed to invalidations, closed in t.Cleanup.
func (e cacheEnv) cache(t testing.TB, opts storage.CacheOptions) *storage.Cache {
	t.Helper()
	opts.KeyPrefix = e.prefix
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	var rdb redis.UniversalClient
	if e.rdb != nil {
		rdb = e.rdb
	}
	c := storage.NewCache(e.backend, rdb, opts)
	t.Cleanup(func() { _ = c.Close() })
	// A bound for the failure message: subscribing takes a round trip,
	// which on a loaded machine (or a Redis Cluster) can take seconds.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.WaitSubscribed(ctx); err != nil {
		t.Fatalf("cache did not subscribe to invalidations: %v", err)
	}
	return c
}

// mustCreateTenant stores a tenant with slug and status through c.
func mustCreateTenant(t *testing.T, ctx context.Context, c storage.Catalog, slug string, status tenantctx.Status) tenantctx.Tenant {
	t.Helper()
	tn, err := tenantctx.New(slug, "Tenant "+slug, "pro")
	if err != nil {
		t.Fatalf("tenantctx.New(%q): %v", slug, err)
	}
	tn.Status = status
	created, err := c.CreateTenant(ctx, tn)
	if err != nil {
		t.Fatalf("CreateTenant(%s): %v", slug, err)
	}
	return created
}

// isNotFound reports whether err is storage.ErrNotFound.
func isNotFound(err error) bool { return errors.Is(err, storage.ErrNotFound) }

// eventually polls cond until it holds or within has passed, and reports
// how long it took.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Errorf("%s: not within %s", what, within)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCacheConformance(t *testing.T) {
	t.Parallel()
	addr := testenv.Redis(t)
	tests := []struct {
		name    string
		opts    storage.CacheOptions
		noRedis bool
	}{
		{name: "local and redis"},
		{name: "redis only", opts: storage.CacheOptions{LocalTTL: -1}},
		{name: "local only", noRedis: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			storagetest.TestCatalog(t, func(t *testing.T) storage.Catalog {
				env := newCacheEnv(t, addr)
				if tt.noRedis {
					env.rdb = nil
				}
				return env.cache(t, tt.opts)
			})
		})
	}
}

func TestCacheRejectsMalformedInputWithoutQueries(t *testing.T) {
	t.Parallel()
	env := newCacheEnv(t, testenv.Redis(t))
	c := env.cache(t, storage.CacheOptions{})
	ctx := t.Context()
	hostile := []string{"", "../x", "a'; drop table tenancy.tenants; --", "a\x00b", "ACME", string(make([]byte, 10<<10))}
	for _, s := range hostile {
		if _, err := c.TenantByID(ctx, s); !isNotFound(err) {
			t.Errorf("Tenant(%.20q) error = %v, want ErrNotFound", s, err)
		}
		if _, err := c.TenantBySlug(ctx, s); !isNotFound(err) {
			t.Errorf("TenantBySlug(%.20q) error = %v, want ErrNotFound", s, err)
		}
		if _, err := c.TenantForAPIKey(ctx, storage.APIKeyPrefix+s); !isNotFound(err) {
			t.Errorf("TenantForAPIKey(%.20q) error = %v, want ErrNotFound", s, err)
		}
	}
	if q := env.backend.Queries(); q != 0 {
		t.Errorf("malformed lookups cost %d backend queries, want 0", q)
	}
	keys, err := env.rdb.Keys(ctx, env.prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Errorf("malformed lookups wrote Redis keys %q, want none", keys)
	}
}

func TestCacheStoresNoPlaintextKey(t *testing.T) {
	t.Parallel()
	env := newCacheEnv(t, testenv.Redis(t))
	c := env.cache(t, storage.CacheOptions{})
	ctx := t.Context()
	tn := mustCreateTenant(t, ctx, c, "keyholder", tenantctx.StatusActive)
	key, err := c.CreateAPIKey(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := c.TenantForAPIKey(ctx, key); err != nil || id != tn.ID {
		t.Fatalf("TenantForAPIKey = %q, %v; want %s", id, err, tn.ID)
	}
	secret := key[len(storage.APIKeyPrefix):]
	keys, err := env.rdb.Keys(ctx, env.prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	sawHash := false
	for _, k := range keys {
		dump := k
		switch typ := env.rdb.Type(ctx, k).Val(); typ {
		case "string":
			dump += " " + env.rdb.Get(ctx, k).Val()
		case "set":
			dump += fmt.Sprint(" ", env.rdb.SMembers(ctx, k).Val())
		}
		if strings.Contains(dump, secret) {
			t.Errorf("Redis holds the plaintext key: %s", dump)
		}
		sawHash = sawHash || strings.Contains(dump, storage.HashAPIKey(key))
	}
	if !sawHash {
		t.Errorf("no Redis key or value holds the key's hash; keys: %q", keys)
	}
}

func TestCacheNegativeEntryTTL(t *testing.T) {
	t.Parallel()
	env := newCacheEnv(t, testenv.Redis(t))
	// A negative TTL long enough that a slow machine cannot eat into the
	// window below, far from RedisTTL so the two cannot be mixed up.
	c := env.cache(t, storage.CacheOptions{NegativeTTL: 5 * time.Minute, RedisTTL: time.Hour})
	ctx := t.Context()
	tn := mustCreateTenant(t, ctx, c, "present", tenantctx.StatusActive)
	if _, err := c.TenantBySlug(ctx, "absent"); !isNotFound(err) {
		t.Fatalf("TenantBySlug(absent) error = %v, want ErrNotFound", err)
	}
	if _, err := c.TenantBySlug(ctx, tn.Slug); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key      string
		min, max time.Duration
	}{
		{c.RedisKeyForSlug("absent"), 4 * time.Minute, 5 * time.Minute},
		{c.RedisKeyForSlug(tn.Slug), 59 * time.Minute, time.Hour},
	}
	for _, tt := range tests {
		ttl, err := env.rdb.PTTL(ctx, tt.key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl < tt.min || ttl > tt.max {
			t.Errorf("PTTL %s = %s, want in [%s, %s]", tt.key, ttl, tt.min, tt.max)
		}
	}
}
