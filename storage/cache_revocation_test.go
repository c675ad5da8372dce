package storage_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tenantctx"
)

// TestCacheRevokeOneKeyEveryInstance: revoking one key through instance A
// is seen at once through A and within a second through B, whose local
// layer would keep the key for a minute without the invalidation; the
// tenant's other key and other tenants' keys stay valid (P18 in
// docs/architecture.md).
func TestCacheRevokeOneKeyEveryInstance(t *testing.T) {
	t.Parallel()
	env := newCacheEnv(t, testenv.Redis(t))
	ctx := t.Context()
	a, b := env.cache(t, longLocal), env.cache(t, longLocal)
	tn := mustCreateTenant(t, ctx, a, "leaky", tenantctx.StatusActive)
	other := mustCreateTenant(t, ctx, a, "careful", tenantctx.StatusActive)
	leaked, leakedKey, err := a.IssueAPIKey(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	_, keptKey, _ := a.IssueAPIKey(ctx, tn.ID)
	_, otherKey, _ := a.IssueAPIKey(ctx, other.ID)
	for _, c := range []*storage.Cache{a, b} {
		for _, key := range []string{leakedKey, keptKey, otherKey} {
			if _, err := c.TenantForAPIKey(ctx, key); err != nil {
				t.Fatalf("warm the caches: %v", err)
			}
		}
	}

	if _, err := a.RevokeAPIKey(ctx, tn.ID, leaked.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.TenantForAPIKey(ctx, leakedKey); !isNotFound(err) {
		t.Errorf("revoked key through A right after: %v, want ErrNotFound", err)
	}
	start := time.Now()
	eventually(t, propagation, "instance B refuses the revoked key", func() bool {
		_, err := b.TenantForAPIKey(ctx, leakedKey)
		return isNotFound(err)
	})
	t.Logf("instance B refused the revoked key %v after the revocation returned", time.Since(start))
	for _, c := range []*storage.Cache{a, b} {
		if id, err := c.TenantForAPIKey(ctx, keptKey); err != nil || id != tn.ID {
			t.Errorf("the tenant's other key: %q, %v", id, err)
		}
		if id, err := c.TenantForAPIKey(ctx, otherKey); err != nil || id != other.ID {
			t.Errorf("another tenant's key: %q, %v", id, err)
		}
	}
	if _, err := a.RevokeAPIKey(ctx, other.ID, leaked.ID); !isNotFound(err) {
		t.Errorf("revoking a key through another tenant: %v, want ErrNotFound", err)
	}
}

// TestCacheRevocationWithMixedTTLs: processes whose TENANT_CACHE_TTL
// differ (the setting changed in a rolling deploy) share the Redis layer.
// A fill by the one with the shorter TTL must not shorten the tenant's set
// of cached key hashes below an entry the other filled: once the set had
// expired, a revocation would find nothing to delete, and the revoked key
// would be served from Redis for the rest of that entry's TTL.
func TestCacheRevocationWithMixedTTLs(t *testing.T) {
	t.Parallel()
	env := newCacheEnv(t, testenv.Redis(t))
	ctx := t.Context()
	long := env.cache(t, storage.CacheOptions{RedisTTL: time.Hour, LocalTTL: 50 * time.Millisecond})
	short := env.cache(t, storage.CacheOptions{RedisTTL: 300 * time.Millisecond, LocalTTL: 50 * time.Millisecond})
	tn := mustCreateTenant(t, ctx, long, "skewed", tenantctx.StatusActive)
	revoked, revokedKey, err := long.IssueAPIKey(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := long.IssueAPIKey(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := long.TenantForAPIKey(ctx, revokedKey); err != nil { // cached in Redis for an hour
		t.Fatal(err)
	}
	if _, err := short.TenantForAPIKey(ctx, otherKey); err != nil { // a fill with 300 ms
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // past the short TTL: its entry is gone

	if _, err := long.RevokeAPIKey(ctx, tn.ID, revoked.ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // past both local TTLs
	for name, c := range map[string]*storage.Cache{"long": long, "short": short} {
		if id, err := c.TenantForAPIKey(ctx, revokedKey); !isNotFound(err) {
			t.Errorf("process with the %s TTL: the revoked key still names tenant %q (%v); want ErrNotFound", name, id, err)
		}
	}
}

// TestCacheRevocationFailsWhenInvalidationFails: when the invalidation of
// a write that revokes access cannot be published to the other instances,
// or cannot be applied in Redis, the write returns ErrInvalidationFailed
// instead of succeeding while other instances keep the old answer for the
// Redis TTL. The change itself is saved; a retry once Redis works
// propagates it. Lookups never fail for it.
func TestCacheRevocationFailsWhenInvalidationFails(t *testing.T) {
	t.Parallel()
	addr := testenv.Redis(t)
	env := newCacheEnv(t, addr)
	ctx := t.Context()
	hook := &testenv.FailCommands{}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	rdb.AddHook(hook)
	t.Cleanup(func() { _ = rdb.Close() })
	broken := storage.NewCache(env.backend, rdb, storage.CacheOptions{KeyPrefix: env.prefix, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { _ = broken.Close() })
	if err := broken.WaitSubscribed(ctx); err != nil {
		t.Fatal(err)
	}
	other := env.cache(t, longLocal)

	for _, failing := range [][]string{{"publish"}, {"evalsha", "eval"}} {
		hook.Set()
		tn := mustCreateTenant(t, ctx, broken, "victim-"+failing[0], tenantctx.StatusActive)
		k, key, err := broken.IssueAPIKey(ctx, tn.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := other.TenantForAPIKey(ctx, key); err != nil {
			t.Fatal(err)
		}
		hook.Set(failing...)

		if _, err := broken.RevokeAPIKey(ctx, tn.ID, k.ID); !errors.Is(err, storage.ErrInvalidationFailed) {
			t.Errorf("RevokeAPIKey with %v failing: %v, want ErrInvalidationFailed", failing, err)
		}
		if _, err := env.backend.TenantForAPIKey(ctx, key); !isNotFound(err) {
			t.Errorf("with %v failing the key was not revoked in the backend: %v", failing, err)
		}
		if err := broken.RevokeAPIKeys(ctx, tn.ID); !errors.Is(err, storage.ErrInvalidationFailed) {
			t.Errorf("RevokeAPIKeys with %v failing: %v, want ErrInvalidationFailed", failing, err)
		}
		if got, err := broken.SetStatus(ctx, tn.ID, tenantctx.StatusSuspended); !errors.Is(err, storage.ErrInvalidationFailed) || got.Status != tenantctx.StatusSuspended {
			t.Errorf("SetStatus with %v failing: %s, %v; want suspended and ErrInvalidationFailed", failing, got.Status, err)
		}
		if got, err := broken.SetLimits(ctx, tn.ID, "pro", tenantctx.Limits{MaxRunning: 3}); !errors.Is(err, storage.ErrInvalidationFailed) || got.Plan != "pro" {
			t.Errorf("SetLimits with %v failing: %+v, %v; want saved and ErrInvalidationFailed", failing, got, err)
		}
		if got, err := broken.SetPlacement(ctx, tn.ID, tenantctx.DefaultDatabase, tenantctx.DefaultDatabase, 0); !errors.Is(err, storage.ErrInvalidationFailed) || got.ID != tn.ID {
			t.Errorf("SetPlacement with %v failing: %+v, %v; want saved and ErrInvalidationFailed", failing, got, err)
		}
		if _, err := broken.TenantByID(ctx, tn.ID); err != nil {
			t.Errorf("a lookup with %v failing: %v", failing, err)
		}
		if err := broken.DeleteTenant(ctx, tn.ID); !errors.Is(err, storage.ErrInvalidationFailed) {
			t.Errorf("DeleteTenant with %v failing: %v, want ErrInvalidationFailed", failing, err)
		}

		// Refusals that change nothing are not invalidation failures.
		if _, err := broken.RevokeAPIKey(ctx, tn.ID, k.ID+1000); !isNotFound(err) {
			t.Errorf("RevokeAPIKey of an unknown key with %v failing: %v, want ErrNotFound", failing, err)
		}

		// Once Redis works again, the retried revocation reaches the
		// other instance.
		hook.Set()
		if err := broken.RevokeAPIKeys(ctx, tn.ID); err != nil {
			t.Fatalf("retry: %v", err)
		}
		eventually(t, propagation, "the other instance refuses the key after the retry", func() bool {
			_, err := other.TenantForAPIKey(ctx, key)
			return isNotFound(err)
		})
	}
}

// countingKeyStore counts RecordAPIKeyUse calls.
type countingKeyStore struct {
	*memstore.Catalog
	mu      sync.Mutex
	flushes int
	keys    int
}

func (c *countingKeyStore) RecordAPIKeyUse(ctx context.Context, uses map[string]time.Time) error {
	c.mu.Lock()
	c.flushes++
	c.keys += len(uses)
	c.mu.Unlock()
	return c.Catalog.RecordAPIKeyUse(ctx, uses)
}

// TestKeyUsageBatchesWrites: thousands of authenticated requests with a
// few keys cost one write per flush, not one per request, and the last use
// reaches the catalog.
func TestKeyUsageBatchesWrites(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := &countingKeyStore{Catalog: memstore.New()}
	tn := mustCreateTenant(t, ctx, store, "busy", tenantctx.StatusActive)
	var keys []string
	for range 3 {
		_, key, err := store.IssueAPIKey(ctx, tn.ID)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
	}
	u := storage.NewKeyUsage(store, storage.KeyUsageOptions{FlushInterval: time.Hour})
	t.Cleanup(func() { _ = u.Close() })
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 1000 {
				u.Touch(keys[(i+j)%2]) // the third key is never used
			}
		})
	}
	wg.Wait()
	if err := u.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := u.Flush(ctx); err != nil { // nothing pending: no write
		t.Fatal(err)
	}
	if store.flushes != 1 || store.keys != 2 {
		t.Errorf("8,000 uses of 2 keys: %d writes naming %d keys, want 1 write naming 2", store.flushes, store.keys)
	}
	listed, err := store.ListAPIKeys(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	if listed[0].LastUsedAt == nil || listed[1].LastUsedAt == nil || listed[2].LastUsedAt != nil {
		t.Errorf("last use after the flush: %+v", listed)
	}

	// Close writes what is pending.
	u.Touch(keys[2])
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	if listed, _ := store.ListAPIKeys(ctx, tn.ID); listed[2].LastUsedAt == nil {
		t.Errorf("a use before Close was not written: %+v", listed[2])
	}
}
