package storage_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tenantctx"
)

// longLocal makes an instance keep local entries for a minute, so only an
// invalidation message can make it notice a write in time.
var longLocal = storage.CacheOptions{LocalTTL: time.Minute, NegativeTTL: time.Minute}

func TestCacheWriteSeenAtOnceAndByOtherInstance(t *testing.T) {
	t.Parallel()
	addr := testenv.Redis(t)
	testCacheWrites(t, func(t *testing.T) cacheEnv { return newCacheEnv(t, addr) })
}

// TestCacheWritesOnCluster is TestCacheWriteSeenAtOnceAndByOtherInstance
// on a real Redis Cluster (three masters): the cache's multi-key reads and
// scripts must stay in one slot (a CROSSSLOT error would only show as a
// Redis error, since lookups fall back to the backend), and pub/sub
// invalidations must reach instances subscribed through other nodes.
func TestCacheWritesOnCluster(t *testing.T) {
	t.Parallel()
	c := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{})
	var caches []*storage.Cache
	var mu sync.Mutex
	testCacheWrites(t, func(t *testing.T) cacheEnv {
		// A client per instance, as processes have.
		return newCacheEnvOn(c.ClientT(t))
	}, func(cs ...*storage.Cache) {
		mu.Lock()
		caches = append(caches, cs...)
		mu.Unlock()
	})
	// The subtests are parallel: they run after this function returns.
	t.Cleanup(func() {
		var redisHits int64
		for _, cc := range caches {
			s := cc.Stats()
			if s.RedisErrors != 0 {
				t.Errorf("cache instance on the cluster counted %d redis errors: %+v", s.RedisErrors, s)
			}
			redisHits += s.RedisHits
		}
		if redisHits == 0 {
			t.Errorf("no lookup was answered from Redis on the cluster")
		}
	})
}

// testCacheWrites checks that every write is seen at once by the writing
// instance, within propagation by another one, and by a new one, on the
// Redis of newEnv. track, when given, receives every instance made.
func testCacheWrites(t *testing.T, newEnv func(t *testing.T) cacheEnv, track ...func(...*storage.Cache)) {
	tests := []struct {
		name       string
		from       tenantctx.Status
		write      func(ctx context.Context, c *storage.Cache, id string) error
		wantStatus tenantctx.Status // "" means deleted
	}{
		{"suspend", tenantctx.StatusActive, setStatus(tenantctx.StatusSuspended), tenantctx.StatusSuspended},
		{"resume", tenantctx.StatusSuspended, setStatus(tenantctx.StatusActive), tenantctx.StatusActive},
		{"deleting", tenantctx.StatusActive, setStatus(tenantctx.StatusDeleting), tenantctx.StatusDeleting},
		{"activate", tenantctx.StatusProvisioning, setStatus(tenantctx.StatusActive), tenantctx.StatusActive},
		{"delete", tenantctx.StatusDeleting, func(ctx context.Context, c *storage.Cache, id string) error {
			return c.DeleteTenant(ctx, id)
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			env := newEnv(t)
			a, b := env.cache(t, longLocal), env.cache(t, longLocal)
			for _, f := range track {
				f(a, b)
			}
			// A tenant being deleted gets no new key: its key was issued
			// before its deletion was requested.
			created := tt.from
			if created == tenantctx.StatusDeleting {
				created = tenantctx.StatusActive
			}
			tn := mustCreateTenant(t, ctx, a, "writes-"+tt.name, created)
			key, err := a.CreateAPIKey(ctx, tn.ID)
			if err != nil {
				t.Fatal(err)
			}
			if created != tt.from {
				if tn, err = a.SetStatus(ctx, tn.ID, tt.from); err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range []*storage.Cache{a, b} { // warm both layers of both
				for range 2 {
					if ok, desc := sees(ctx, c, tn, key, tt.from); !ok {
						t.Fatalf("before the write: %s", desc)
					}
				}
			}
			// The key's creation is published; on a cluster the message
			// may reach B after it warmed, dropping its key entry, so
			// warm again until B answers everything from its local layer.
			eventually(t, 30*time.Second, "instance B answers from its local layer", func() bool {
				before := b.Stats().LocalHits
				if ok, _ := sees(ctx, b, tn, key, tt.from); !ok {
					return false
				}
				return b.Stats().LocalHits-before == 3
			})

			if err := tt.write(ctx, a, tn.ID); err != nil {
				t.Fatalf("write through A: %v", err)
			}
			if ok, desc := sees(ctx, a, tn, key, tt.wantStatus); !ok {
				t.Errorf("instance A right after its own write: %s", desc)
			}
			eventually(t, propagation, "instance B sees the write", func() bool {
				ok, _ := sees(ctx, b, tn, key, tt.wantStatus)
				return ok
			})
			fresh := env.cache(t, longLocal)
			for _, f := range track {
				f(fresh)
			}
			if ok, desc := sees(ctx, fresh, tn, key, tt.wantStatus); !ok {
				t.Errorf("a new instance (Redis layer only): %s", desc)
			}
		})
	}
}

// setStatus returns a write that sets status through a cache.
func setStatus(status tenantctx.Status) func(context.Context, *storage.Cache, string) error {
	return func(ctx context.Context, c *storage.Cache, id string) error {
		_, err := c.SetStatus(ctx, id, status)
		return err
	}
}

// sees reports whether c answers for tn by id and slug with status, and
// for its key (valid unless tn was deleted); status "" means deleted.
func sees(ctx context.Context, c *storage.Cache, tn tenantctx.Tenant, key string, status tenantctx.Status) (bool, string) {
	byID, errID := c.TenantByID(ctx, tn.ID)
	bySlug, errSlug := c.TenantBySlug(ctx, tn.Slug)
	owner, errKey := c.TenantForAPIKey(ctx, key)
	if status == "" {
		if isNotFound(errID) && isNotFound(errSlug) && isNotFound(errKey) {
			return true, ""
		}
		return false, "deleted tenant still served: by id " + string(byID.Status) + errString(errID) +
			", by slug " + string(bySlug.Status) + errString(errSlug) + ", key owner " + owner + errString(errKey)
	}
	if errID == nil && errSlug == nil && errKey == nil && byID.Status == status && bySlug.Status == status && owner == tn.ID {
		return true, ""
	}
	return false, "want status " + string(status) + ": by id " + string(byID.Status) + errString(errID) +
		", by slug " + string(bySlug.Status) + errString(errSlug) + ", key owner " + owner + errString(errKey)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return " (" + err.Error() + ")"
}

func TestCacheNegativeLookups(t *testing.T) {
	t.Parallel()
	addr := testenv.Redis(t)
	const lookups = 1000
	tests := []struct {
		name   string
		lookup func(ctx context.Context, c *storage.Cache, tn tenantctx.Tenant) error
	}{
		{"slug", func(ctx context.Context, c *storage.Cache, tn tenantctx.Tenant) error {
			_, err := c.TenantBySlug(ctx, tn.Slug)
			return err
		}},
		{"id", func(ctx context.Context, c *storage.Cache, tn tenantctx.Tenant) error {
			_, err := c.TenantByID(ctx, tn.ID)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			env := newCacheEnv(t, addr)
			a, b := env.cache(t, longLocal), env.cache(t, longLocal)
			// Not yet created: a random subdomain, or a task of a tenant
			// that does not exist yet.
			future, err := tenantctx.New("future-"+tt.name, "Future", "free")
			if err != nil {
				t.Fatal(err)
			}
			for i := range lookups {
				c := a
				if i%2 == 1 {
					c = b
				}
				if err := tt.lookup(ctx, c, future); !isNotFound(err) {
					t.Fatalf("lookup #%d of an unknown %s: error = %v, want ErrNotFound", i, tt.name, err)
				}
			}
			if q := env.backend.Queries(); q > 3 {
				t.Errorf("%d lookups of one unknown %s cost %d backend queries, want at most 3", lookups, tt.name, q)
			}
			if s := a.Stats(); s.NegativeHits < lookups/2-1 {
				t.Errorf("instance A stats %+v: want its negative hits counted", s)
			}

			// Creating it must end the negative entry at once here, and
			// within a second elsewhere.
			if _, err := a.CreateTenant(ctx, future); err != nil {
				t.Fatal(err)
			}
			if err := tt.lookup(ctx, a, future); err != nil {
				t.Errorf("lookup through A right after CreateTenant: %v", err)
			}
			eventually(t, propagation, "instance B sees the new tenant", func() bool {
				return tt.lookup(ctx, b, future) == nil
			})
		})
	}
}

func TestCacheUnknownAPIKeyIsCachedNegative(t *testing.T) {
	t.Parallel()
	env := newCacheEnv(t, testenv.Redis(t))
	c := env.cache(t, storage.CacheOptions{})
	ctx := t.Context()
	unknown, _ := storage.NewAPIKey()
	for i := range 1000 {
		if _, err := c.TenantForAPIKey(ctx, unknown); !isNotFound(err) {
			t.Fatalf("lookup #%d of an unknown key: error = %v, want ErrNotFound", i, err)
		}
	}
	if q := env.backend.Queries(); q > 3 {
		t.Errorf("1000 lookups of one unknown key cost %d backend queries, want at most 3", q)
	}
}

func TestCacheAPIKeyRevocation(t *testing.T) {
	t.Parallel()
	env := newCacheEnv(t, testenv.Redis(t))
	ctx := t.Context()
	a, b := env.cache(t, longLocal), env.cache(t, longLocal)
	tn := mustCreateTenant(t, ctx, a, "revoker", tenantctx.StatusActive)
	other := mustCreateTenant(t, ctx, a, "bystander", tenantctx.StatusActive)
	k1, _ := a.CreateAPIKey(ctx, tn.ID)
	k2, _ := a.CreateAPIKey(ctx, tn.ID)
	kOther, _ := a.CreateAPIKey(ctx, other.ID)

	owner := func(c *storage.Cache, key string) string {
		id, err := c.TenantForAPIKey(ctx, key)
		if err != nil {
			return err.Error()
		}
		return id
	}
	for _, c := range []*storage.Cache{a, b, a, b} {
		for key, want := range map[string]string{k1: tn.ID, k2: tn.ID, kOther: other.ID} {
			if got := owner(c, key); got != want {
				t.Fatalf("TenantForAPIKey = %s, want %s", got, want)
			}
		}
	}
	if q := env.backend.Queries(); q != 3 {
		t.Errorf("12 verifications of 3 keys through 2 instances cost %d backend queries, want 3 (cached)", q)
	}

	if err := a.RevokeAPIKeys(ctx, tn.ID); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{k1, k2} {
		if _, err := a.TenantForAPIKey(ctx, key); !isNotFound(err) {
			t.Errorf("revoked key through A right after the revocation: error = %v, want ErrNotFound", err)
		}
	}
	eventually(t, propagation, "instance B refuses the revoked keys", func() bool {
		_, err1 := b.TenantForAPIKey(ctx, k1)
		_, err2 := b.TenantForAPIKey(ctx, k2)
		return isNotFound(err1) && isNotFound(err2)
	})
	if _, err := env.cache(t, longLocal).TenantForAPIKey(ctx, k1); !isNotFound(err) {
		t.Errorf("revoked key through a new instance: error = %v, want ErrNotFound", err)
	}
	for _, c := range []*storage.Cache{a, b} {
		if got := owner(c, kOther); got != other.ID {
			t.Errorf("another tenant's key after the revocation: %s, want %s", got, other.ID)
		}
	}
	k3, err := a.CreateAPIKey(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*storage.Cache{a, b} {
		if got := owner(c, k3); got != tn.ID {
			t.Errorf("new key after the revocation: %s, want %s", got, tn.ID)
		}
	}
}

// gatedBackend pauses the first Tenant lookup after arm, after it has read
// the backend: a reader holding a value about to go stale.
type gatedBackend struct {
	*memstore.Catalog
	armed   chan struct{} // one token: the next Tenant call pauses
	reached chan struct{} // closed when the paused call has its answer
	release chan struct{} // closed to let it return
}

func newGatedBackend() *gatedBackend {
	return &gatedBackend{
		Catalog: memstore.New(),
		armed:   make(chan struct{}, 1),
		reached: make(chan struct{}),
		release: make(chan struct{}),
	}
}

func (g *gatedBackend) TenantByID(ctx context.Context, id string) (tenantctx.Tenant, error) {
	t, err := g.Catalog.TenantByID(ctx, id)
	select {
	case <-g.armed:
		close(g.reached)
		<-g.release
	default:
	}
	return t, err
}

func TestCacheNeverServesDeletedTenantAfterRacingRead(t *testing.T) {
	t.Parallel()
	addr := testenv.Redis(t)
	for _, sameInstance := range []bool{true, false} {
		name := map[bool]string{true: "reader is the writer", false: "reader is another instance"}[sameInstance]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			env := newCacheEnv(t, addr)
			gated := newGatedBackend()
			writer := storage.NewCache(gated, env.rdb, storage.CacheOptions{KeyPrefix: env.prefix, LocalTTL: time.Minute})
			t.Cleanup(func() { _ = writer.Close() })
			reader := writer
			if !sameInstance {
				reader = storage.NewCache(gated, env.rdb, storage.CacheOptions{KeyPrefix: env.prefix, LocalTTL: time.Minute})
				t.Cleanup(func() { _ = reader.Close() })
			}
			for _, c := range []*storage.Cache{writer, reader} {
				if err := c.WaitSubscribed(ctx); err != nil {
					t.Fatal(err)
				}
			}
			tn := mustCreateTenant(t, ctx, gated, "racy", tenantctx.StatusDeleting)
			if _, err := reader.TenantBySlug(ctx, tn.Slug); err != nil { // a local entry to watch
				t.Fatal(err)
			}

			// The reader reads the tenant from the backend and pauses...
			gated.armed <- struct{}{}
			type answer struct {
				t   tenantctx.Tenant
				err error
			}
			done := make(chan answer, 1)
			go func() {
				got, err := reader.TenantByID(ctx, tn.ID)
				done <- answer{got, err}
			}()
			<-gated.reached
			// ...the tenant is deleted, and the reader's instance hears of it...
			if err := writer.DeleteTenant(ctx, tn.ID); err != nil {
				t.Fatal(err)
			}
			eventually(t, propagation, "reader instance drops its local entry", func() bool {
				_, err := reader.TenantBySlug(ctx, tn.Slug)
				return isNotFound(err)
			})
			// A lookup now must not join the paused one.
			if got, err := reader.TenantByID(ctx, tn.ID); !isNotFound(err) {
				t.Errorf("lookup during the paused read = %+v, %v; want ErrNotFound", got, err)
			}
			// ...then the paused read stores what it read, or tries to.
			close(gated.release)
			if a := <-done; a.err != nil && !isNotFound(a.err) {
				t.Fatalf("paused lookup: %v", a.err)
			}

			for _, c := range []*storage.Cache{writer, reader, env.cache(t, storage.CacheOptions{})} {
				if got, err := c.TenantByID(ctx, tn.ID); !isNotFound(err) {
					t.Errorf("after the racing read the deleted tenant is served: %+v, %v", got, err)
				}
			}
			raw, err := env.rdb.Get(ctx, writer.RedisKeyForID(tn.ID)).Result()
			if err == nil {
				var e struct{ Found bool }
				if jerr := json.Unmarshal([]byte(raw), &e); jerr != nil || e.Found {
					t.Errorf("Redis holds %s for the deleted tenant, want nothing or not-found", raw)
				}
			}
		})
	}
}
