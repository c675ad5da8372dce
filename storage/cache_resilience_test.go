package storage_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tenantctx"
)

// slowBackend answers TenantByID, TenantBySlug and TenantForAPIKey after a
// delay, so concurrent misses overlap.
type slowBackend struct {
	*memstore.Catalog
	delay time.Duration
}

func (s slowBackend) TenantByID(ctx context.Context, id string) (tenantctx.Tenant, error) {
	time.Sleep(s.delay)
	return s.Catalog.TenantByID(ctx, id)
}

func (s slowBackend) TenantBySlug(ctx context.Context, slug string) (tenantctx.Tenant, error) {
	time.Sleep(s.delay)
	return s.Catalog.TenantBySlug(ctx, slug)
}

func (s slowBackend) TenantForAPIKey(ctx context.Context, key string) (string, error) {
	time.Sleep(s.delay)
	return s.Catalog.TenantForAPIKey(ctx, key)
}

func TestCacheConcurrentMissesShareOneQuery(t *testing.T) {
	t.Parallel()
	addr := testenv.Redis(t)
	const callers = 100
	layers := []struct {
		name string
		opts storage.CacheOptions
	}{
		{"local and redis", storage.CacheOptions{}},
		{"redis only", storage.CacheOptions{LocalTTL: -1}},
	}
	lookups := []struct {
		name   string
		lookup func(ctx context.Context, c *storage.Cache, tn tenantctx.Tenant, key string) (string, error)
	}{
		{"by id", func(ctx context.Context, c *storage.Cache, tn tenantctx.Tenant, _ string) (string, error) {
			got, err := c.TenantByID(ctx, tn.ID)
			return got.ID, err
		}},
		{"by slug", func(ctx context.Context, c *storage.Cache, tn tenantctx.Tenant, _ string) (string, error) {
			got, err := c.TenantBySlug(ctx, tn.Slug)
			return got.ID, err
		}},
		{"by api key", func(ctx context.Context, c *storage.Cache, _ tenantctx.Tenant, key string) (string, error) {
			return c.TenantForAPIKey(ctx, key)
		}},
	}
	for _, layer := range layers {
		for _, lk := range lookups {
			t.Run(layer.name+"/"+lk.name, func(t *testing.T) {
				t.Parallel()
				ctx := t.Context()
				env := newCacheEnv(t, addr)
				tn := mustCreateTenant(t, ctx, env.backend, "crowd", tenantctx.StatusActive)
				key, err := env.backend.CreateAPIKey(ctx, tn.ID)
				if err != nil {
					t.Fatal(err)
				}
				c := storage.NewCache(slowBackend{env.backend, 50 * time.Millisecond}, env.rdb,
					storage.CacheOptions{KeyPrefix: env.prefix, LocalTTL: layer.opts.LocalTTL})
				t.Cleanup(func() { _ = c.Close() })
				if err := c.WaitSubscribed(ctx); err != nil {
					t.Fatal(err)
				}

				before := env.backend.Queries()
				start := make(chan struct{})
				var wg sync.WaitGroup
				errs := make([]error, callers)
				for i := range callers {
					wg.Go(func() {
						<-start
						id, err := lk.lookup(ctx, c, tn, key)
						if err == nil && id != tn.ID {
							err = errWrongTenant(id)
						}
						errs[i] = err
					})
				}
				close(start)
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Errorf("caller %d: %v", i, err)
					}
				}
				if q := env.backend.Queries() - before; q != 1 {
					t.Errorf("%d concurrent misses cost %d backend queries, want exactly 1", callers, q)
				}
			})
		}
	}
}

type errWrongTenant string

func (e errWrongTenant) Error() string { return "wrong tenant " + string(e) }

func TestCacheAnswersWhileRedisIsDown(t *testing.T) {
	t.Parallel()
	server := testenv.StartRedis(t, testenv.RedisOptions{})
	env := newCacheEnv(t, server.Addr())
	ctx := t.Context()
	a := env.cache(t, storage.CacheOptions{LocalTTL: -1}) // every lookup needs Redis or the backend
	b := env.cache(t, storage.CacheOptions{LocalTTL: 100 * time.Millisecond})
	tn := mustCreateTenant(t, ctx, a, "resilient", tenantctx.StatusActive)
	key, err := a.CreateAPIKey(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	unknownKey, _ := storage.NewAPIKey()
	check := func(c *storage.Cache, status tenantctx.Status) {
		t.Helper()
		if got, err := c.TenantByID(ctx, tn.ID); err != nil || got.Status != status {
			t.Errorf("Tenant = %s, %v; want %s", got.Status, err, status)
		}
		if got, err := c.TenantBySlug(ctx, tn.Slug); err != nil || got.Status != status {
			t.Errorf("TenantBySlug = %s, %v; want %s", got.Status, err, status)
		}
		if got, err := c.TenantForAPIKey(ctx, key); err != nil || got != tn.ID {
			t.Errorf("TenantForAPIKey = %s, %v; want %s", got, err, tn.ID)
		}
		if _, err := c.TenantBySlug(ctx, "nobody-here"); !isNotFound(err) {
			t.Errorf("TenantBySlug(unknown) error = %v, want ErrNotFound", err)
		}
		if _, err := c.TenantForAPIKey(ctx, unknownKey); !isNotFound(err) {
			t.Errorf("TenantForAPIKey(unknown) error = %v, want ErrNotFound", err)
		}
	}
	check(a, tenantctx.StatusActive) // fills Redis
	check(a, tenantctx.StatusActive) // hits Redis
	check(b, tenantctx.StatusActive)
	if s := a.Stats(); s.RedisHits == 0 {
		t.Fatalf("with Redis up, A's stats %+v show no Redis hit", s)
	}

	server.Stop(t)
	before := env.backend.Queries()
	errsBefore := a.Stats().RedisErrors
	started := time.Now()
	const rounds = 20
	for range rounds {
		check(a, tenantctx.StatusActive)
		check(b, tenantctx.StatusActive)
	}
	// Reads skip Redis for RedisBackoff after an error instead of paying
	// go-redis's dial retries on every lookup: A's 100 lookups try Redis
	// once per RedisBackoff (a second) they took, however long that was.
	windows := int64(time.Since(started)/storage.DefaultCacheRedisBackoff) + 1
	if errs := a.Stats().RedisErrors - errsBefore; errs < 1 || errs > windows {
		t.Errorf("%d rounds of lookups with Redis down, over %d backoff windows: %d failed Redis operations through A, want 1 to %d", rounds, windows, errs, windows)
	}
	if q := env.backend.Queries() - before; q < rounds*5 {
		t.Errorf("with Redis down, %d rounds through the Redis-only instance cost %d backend queries, want at least %d", rounds, q, rounds*5)
	}
	if s := a.Stats(); s.RedisErrors == 0 {
		t.Errorf("A's stats %+v count no Redis error", s)
	}

	// Writes reach the backend, which decides, and the writer sees them at
	// once; but one that revokes access says that its invalidation did not
	// reach the other instances (ErrInvalidationFailed), so its caller can
	// tell the operator instead of reporting success.
	if got, err := a.SetStatus(ctx, tn.ID, tenantctx.StatusSuspended); !errors.Is(err, storage.ErrInvalidationFailed) || got.Status != tenantctx.StatusSuspended {
		t.Fatalf("SetStatus with Redis down = %s, %v; want suspended and ErrInvalidationFailed", got.Status, err)
	}
	check(a, tenantctx.StatusSuspended)
	// Only B's 100 ms local TTL can heal it (Redis is down, the
	// invalidation failed); the bound names the failure, it measures
	// nothing.
	eventually(t, 30*time.Second, "B heals through its local TTL", func() bool {
		got, err := b.TenantByID(ctx, tn.ID)
		return err == nil && got.Status == tenantctx.StatusSuspended
	})

	server.Start(t)
	hits := a.Stats().RedisHits
	eventually(t, time.Minute, "A uses Redis again", func() bool {
		_, _ = a.TenantByID(ctx, tn.ID)
		return a.Stats().RedisHits > hits
	})
	check(a, tenantctx.StatusSuspended)
}

// TestCacheCloseLeavesNoGoroutines is not parallel: goleak compares the
// goroutines before and after, so no other test may start any meanwhile.
func TestCacheCloseLeavesNoGoroutines(t *testing.T) {
	tests := []struct {
		name           string
		stopRedisFirst bool
	}{
		{"redis up", false},
		{"redis down at close", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := testenv.StartRedis(t, testenv.RedisOptions{})
			env := newCacheEnv(t, server.Addr())
			ctx := t.Context()
			tn := mustCreateTenant(t, ctx, env.backend, "leakless", tenantctx.StatusActive)
			if err := env.rdb.Ping(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			ignore := goleak.IgnoreCurrent()

			a := storage.NewCache(env.backend, env.rdb, storage.CacheOptions{KeyPrefix: env.prefix})
			b := storage.NewCache(slowBackend{env.backend, 10 * time.Millisecond}, env.rdb, storage.CacheOptions{KeyPrefix: env.prefix})
			for _, c := range []*storage.Cache{a, b} {
				if err := c.WaitSubscribed(ctx); err != nil {
					t.Fatal(err)
				}
			}
			var wg sync.WaitGroup
			for range 10 { // shared misses run in singleflight goroutines
				wg.Go(func() { _, _ = b.TenantByID(ctx, tn.ID) })
			}
			wg.Wait()
			if _, err := a.SetStatus(ctx, tn.ID, tenantctx.StatusSuspended); err != nil {
				t.Fatal(err)
			}
			if tt.stopRedisFirst {
				server.Stop(t)
			}
			for _, c := range []*storage.Cache{a, b} {
				if err := c.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
				if err := c.Close(); err != nil {
					t.Errorf("second Close: %v", err)
				}
			}
			goleak.VerifyNone(t, ignore)
		})
	}
}
