package storage_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
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

// keyGatedBackend pauses the first TenantForAPIKey after arm, after it has
// read the backend: a reader holding a key's owner about to be revoked.
type keyGatedBackend struct {
	*memstore.Catalog
	armed   chan struct{} // one token: the next key lookup pauses
	reached chan struct{} // closed when the paused lookup has its answer
	release chan struct{} // closed to let it return
}

func (g *keyGatedBackend) TenantForAPIKey(ctx context.Context, key string) (string, error) {
	id, err := g.Catalog.TenantForAPIKey(ctx, key)
	select {
	case <-g.armed:
		close(g.reached)
		<-g.release
	default:
	}
	return id, err
}

// TestCacheNeverServesRevokedKeyAfterRacingRead: a key lookup that read
// the catalog before a revocation and fills the caches after it (an
// enqueue service's request that missed both layers while an operator
// revoked the key) must not put the revoked key back into Redis, where
// every instance, also one started later, would accept it for the Redis
// TTL: the revocation moves the key entries' guard on, and a fill that
// read the guard before it stores nothing (P18 in docs/architecture.md).
func TestCacheNeverServesRevokedKeyAfterRacingRead(t *testing.T) {
	t.Parallel()
	env := newCacheEnv(t, testenv.Redis(t))
	ctx := t.Context()
	gated := &keyGatedBackend{Catalog: memstore.New(), armed: make(chan struct{}, 1), reached: make(chan struct{}), release: make(chan struct{})}
	opts := storage.CacheOptions{KeyPrefix: env.prefix, LocalTTL: time.Minute, RedisTTL: time.Hour}
	writer := storage.NewCache(gated, env.rdb, opts)
	reader := storage.NewCache(gated, env.rdb, opts)
	t.Cleanup(func() { _ = writer.Close(); _ = reader.Close() })
	for _, c := range []*storage.Cache{writer, reader} {
		if err := c.WaitSubscribed(ctx); err != nil {
			t.Fatal(err)
		}
	}
	tn := mustCreateTenant(t, ctx, writer, "racykey", tenantctx.StatusActive)
	leaked, leakedKey, err := writer.IssueAPIKey(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}

	// The reader misses both layers, reads the key's owner and pauses...
	gated.armed <- struct{}{}
	done := make(chan error, 1)
	go func() {
		_, err := reader.TenantForAPIKey(ctx, leakedKey)
		done <- err
	}()
	<-gated.reached
	// ...the key is revoked...
	if _, err := writer.RevokeAPIKey(ctx, tn.ID, leaked.ID); err != nil {
		t.Fatal(err)
	}
	// ...then the paused lookup answers and fills what it read, or tries to.
	close(gated.release)
	if err := <-done; err != nil && !isNotFound(err) {
		t.Fatalf("paused lookup: %v", err)
	}

	fresh := storage.NewCache(env.backend, env.rdb, opts) // another process: no local entry, and a catalog that never saw the key
	t.Cleanup(func() { _ = fresh.Close() })
	if id, err := fresh.TenantForAPIKey(ctx, leakedKey); !isNotFound(err) {
		t.Errorf("after the racing read, the revoked key is served from Redis to another instance: %q, %v; want ErrNotFound", id, err)
	}
	for name, c := range map[string]*storage.Cache{"writer": writer, "reader": reader} {
		if id, err := c.TenantForAPIKey(ctx, leakedKey); !isNotFound(err) {
			t.Errorf("after the racing read, the revoked key is served through the %s: %q, %v; want ErrNotFound", name, id, err)
		}
	}
}

// gatedDialer dials Redis for one client, and can close every connection
// it made and hold further dials back until released: a network cut
// between one enqueue service and Redis.
type gatedDialer struct {
	mu    sync.Mutex
	conns []net.Conn
	gate  chan struct{} // nil: dials go through; else they wait for its close
}

func (d *gatedDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	gate := d.gate
	d.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err == nil {
		d.mu.Lock()
		d.conns = append(d.conns, c)
		d.mu.Unlock()
	}
	return c, err
}

// cut closes every connection and holds new dials back; the returned
// func lets them through again.
func (d *gatedDialer) cut() (restore func()) {
	gate := make(chan struct{})
	d.mu.Lock()
	d.gate = gate
	conns := d.conns
	d.conns = nil
	d.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	return func() {
		d.mu.Lock()
		d.gate = nil
		d.mu.Unlock()
		close(gate)
	}
}

// TestCacheRevocationMissedWhileUnsubscribedIsNotServed: an instance whose
// connection to Redis was cut while another revoked a key misses the
// invalidation's message; when it subscribes again it drops its local
// entries, so the revoked key is refused, not served from its local layer
// for the rest of the local TTL (P18 in docs/architecture.md).
func TestCacheRevocationMissedWhileUnsubscribedIsNotServed(t *testing.T) {
	t.Parallel()
	addr := testenv.Redis(t)
	env := newCacheEnv(t, addr)
	ctx := t.Context()
	a := env.cache(t, longLocal)
	d := &gatedDialer{}
	rdbB := redis.NewClient(&redis.Options{Addr: addr, Dialer: d.dial, MaxRetries: -1})
	t.Cleanup(func() { _ = rdbB.Close() })
	b := storage.NewCache(env.backend, rdbB, storage.CacheOptions{KeyPrefix: env.prefix, LocalTTL: time.Minute, NegativeTTL: time.Minute})
	t.Cleanup(func() { _ = b.Close() })
	if err := b.WaitSubscribed(ctx); err != nil {
		t.Fatal(err)
	}
	tn := mustCreateTenant(t, ctx, a, "cutoff", tenantctx.StatusActive)
	leaked, leakedKey, err := a.IssueAPIKey(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Warm B's local layer: an invalidation B hears while it reads (the
	// issuance's) keeps the answer out of it, so read until one is local.
	eventually(t, propagation, "the key in B's local layer", func() bool {
		before := b.Stats().LocalHits
		id, err := b.TenantForAPIKey(ctx, leakedKey)
		if err != nil || id != tn.ID {
			t.Fatalf("B's look-up of the key: %q, %v", id, err)
		}
		return b.Stats().LocalHits > before
	})

	restore := d.cut() // B's subscription is gone and cannot come back yet
	if _, err := a.RevokeAPIKey(ctx, tn.ID, leaked.ID); err != nil {
		t.Fatal(err)
	}
	restore()
	eventually(t, propagation, "instance B refuses the key revoked while it was cut off", func() bool {
		_, err := b.TenantForAPIKey(ctx, leakedKey)
		return isNotFound(err)
	})
}
