package httpapi_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/httpapi"
	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
)

// replica is a second enqueue service on the bundle's PostgreSQL and
// Redis: its own tenant cache (the same Redis layer and channel), its own
// lifecycle service and handler, as a second process has. Its cache's
// Redis client goes through failing, so that a test can make Redis refuse
// its cache's scripts and publishes.
type replica struct {
	catalog *storage.Cache
	srv     *httptest.Server
	failing *testenv.FailCommands
}

// newReplica starts a replica of b.
func newReplica(t testing.TB, b *bundle) *replica {
	t.Helper()
	rp := &replica{failing: &testenv.FailCommands{}}
	rdb := redis.NewClient(&redis.Options{Addr: b.rdb.Options().Addr})
	rdb.AddHook(rp.failing)
	t.Cleanup(func() { _ = rdb.Close() })
	rp.catalog = storage.NewCache(b.pg, rdb, storage.CacheOptions{KeyPrefix: "test:", NegativeTTL: time.Hour})
	t.Cleanup(func() { _ = rp.catalog.Close() })
	logger := slog.New(slog.NewJSONHandler(b.logs, nil))
	svc := tenancy.New(tenancy.Config{Catalog: rp.catalog, Enqueuer: b.enqueuer, Documents: b.docs, SchemaPool: b.pool, Logger: logger})
	h := httpapi.New(httpapi.Options{
		Catalog: rp.catalog, Tenancy: svc, Documents: b.docs, Pool: b.pool, Enqueuer: b.enqueuer,
		Redis: b.rdb, RedisConnOpt: b.redisOpt, DomainSuffix: suffix, AdminToken: adminToken,
		TaskRecords: b.records, Logger: logger, Registry: prometheus.NewRegistry(), AuthFailuresPerMinute: -1,
	})
	t.Cleanup(func() { _ = h.Close() })
	rp.srv = httptest.NewServer(h)
	t.Cleanup(rp.srv.Close)
	return rp
}

// call sends one request to the replica.
func (rp *replica) call(t testing.TB, method, host, path, bearer string) int {
	t.Helper()
	req, err := http.NewRequest(method, rp.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := rp.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestRetriedSuspensionPropagates: a suspension (and a resumption) whose
// cache invalidation Redis refused answers 503, and the README says to
// retry it: "retrying is safe and propagates again". The retry read the
// tenant through the cache, whose Redis entry still said active (the
// failed invalidation had not deleted it), found the catalog suspended
// already, took it for another call's change ("another call made this
// change and recorded it") and answered 200 without invalidating
// anything: both enqueue services went on serving the suspended tenant
// for TENANT_CACHE_TTL (5 minutes), after the operator was told it
// worked.
func TestRetriedSuspensionPropagates(t *testing.T) {
	t.Parallel()
	b := setupOn(t, testenv.Redis(t), nil)
	a := newReplica(t, b)
	acme := b.active(t, "acme")
	task := "/v1/tasks/invoice:pdf:" + acme.ID + ":1"
	// Both services have the tenant cached, in Redis too, by slug (its
	// requests) and by id (the admin routes here; with fair dispatch
	// every enqueue, and the workers' every task, look it up by id).
	if got := a.call(t, http.MethodGet, "", "/admin/tenants/"+acme.ID, adminToken); got != http.StatusOK {
		t.Fatalf("admin look-up: %d", got)
	}
	for name, status := range map[string]int{
		"replica": a.call(t, http.MethodGet, acme.host(), task, acme.key),
		"bundle":  b.do(t, request{method: http.MethodGet, host: acme.host(), path: task, bearer: acme.key}).status,
	} {
		if status != http.StatusNotFound {
			t.Fatalf("%s: task look-up of the active tenant: %d, want 404 (authenticated, no such task)", name, status)
		}
	}

	for _, c := range []struct {
		action string
		want   int // the tenant's requests after it
	}{
		{"suspend", http.StatusForbidden},
		{"resume", http.StatusNotFound},
	} {
		path := "/admin/tenants/" + acme.ID + "/" + c.action
		a.failing.Set("evalsha", "eval", "publish")
		if got := a.call(t, http.MethodPost, "", path, adminToken); got != http.StatusServiceUnavailable {
			t.Fatalf("%s while Redis refuses the invalidation: %d, want 503", c.action, got)
		}
		a.failing.Set()
		if got := a.call(t, http.MethodPost, "", path, adminToken); got != http.StatusOK {
			t.Fatalf("retried %s: %d, want 200", c.action, got)
		}
		// Every service follows within a second (the local layer's TTL),
		// not after the 5 minutes of the cache's Redis layer: 30 s leaves
		// room for a slow machine and still tells the two apart.
		deadline := time.Now().Add(30 * time.Second)
		for {
			ga := a.call(t, http.MethodGet, acme.host(), task, acme.key)
			gb := b.do(t, request{method: http.MethodGet, host: acme.host(), path: task, bearer: acme.key}).status
			if ga == c.want && gb == c.want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("30 s after the retried %s answered 200: the tenant's requests answer %d (replica) and %d (bundle), want %d",
					c.action, ga, gb, c.want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestKeyListShowsEveryUsableKey: the key list is what an operator finds a
// leaked key by ("A leaked key" in docs/operations.md), and revoked keys stay in
// it forever. It was the 1,000 oldest keys: a tenant that had rotated its
// key 1,000 times (revoked ones included) no longer saw its newest keys,
// those in use, nor a key issued since, and the audit entry of such a
// key's revocation lost its prefix.
func TestKeyListShowsEveryUsableKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	acme := b.active(t, "acme")
	// 1,000 earlier keys, every one revoked since, issued after the
	// tenant's first key.
	if _, err := b.pool.Exec(context.Background(), `
		INSERT INTO tenancy.api_keys (tenant_id, key_hash, prefix, revoked_at)
		SELECT $1, md5(g::text) || md5(g::text), 'tk_old', now()
		  FROM generate_series(1, $2::int) AS g`, acme.ID, storage.MaxAPIKeysListed); err != nil {
		t.Fatal(err)
	}
	path := "/admin/tenants/" + acme.ID + "/keys"
	r := b.admin(t, http.MethodPost, path, "")
	wantStatus(t, r, http.StatusCreated)
	var issued struct {
		ID     int64  `json:"id"`
		APIKey string `json:"api_key"`
	}
	decode(t, r.body, &issued)

	r = b.admin(t, http.MethodGet, path, "")
	wantStatus(t, r, http.StatusOK)
	var body struct {
		Keys []listedKey `json:"keys"`
	}
	decode(t, r.body, &body)
	var first, newest bool
	for i, k := range body.Keys {
		if i > 0 && k.ID <= body.Keys[i-1].ID {
			t.Fatalf("key list not oldest first at %d: %d after %d", i, k.ID, body.Keys[i-1].ID)
		}
		first = first || k.Prefix == acme.key[:storage.APIKeyDisplayLen]
		newest = newest || k.ID == issued.ID
	}
	if !first || !newest {
		t.Errorf("the key list (%d keys) shows the tenant's first key: %t, the key just issued (id %d): %t; want both (they are the ones in use)",
			len(body.Keys), first, issued.ID, newest)
	}
}
