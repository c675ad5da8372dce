package storage_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/storage/memstore"
	"github.com/invoicing/tenantworker/tenantctx"
)

// readmeCachePatterns returns the SCAN patterns of the documented command
// that clears the tenant cache after Redis went back in time ("Redis going
// back in time" in docs/guarantees.md, which the README's "Guarantees and
// their limits" links to).
func readmeCachePatterns(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../docs/guarantees.md")
	if err != nil {
		t.Fatal(err)
	}
	_, para, ok := strings.Cut(string(b), "**Redis going back in time.**")
	if !ok {
		t.Fatal("docs/guarantees.md has no paragraph \"Redis going back in time\"")
	}
	para, _, _ = strings.Cut(para, "\n- ")
	var pats []string
	for _, m := range regexp.MustCompile(`--pattern\s+'([^']+)'`).FindAllStringSubmatch(para, -1) {
		pats = append(pats, m[1])
	}
	if len(pats) == 0 {
		t.Fatal("docs/guarantees.md's \"Redis going back in time\" shows no redis-cli --scan --pattern")
	}
	return pats
}

// scanAll returns the keys of one node that SCAN MATCH pattern finds.
func scanAll(t *testing.T, ctx context.Context, rdb *redis.Client, pattern string) []string {
	t.Helper()
	var keys []string
	it := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	for it.Next(ctx) {
		keys = append(keys, it.Val())
	}
	if err := it.Err(); err != nil {
		t.Fatalf("SCAN %q: %v", pattern, err)
	}
	return keys
}

// fillDefaultCache makes a cache with the production key prefix on rdb
// and fills its Redis layer: a tenant by id and slug, and an API key.
func fillDefaultCache(t *testing.T, ctx context.Context, rdb redis.UniversalClient) {
	t.Helper()
	backend := memstore.New()
	c := storage.NewCache(backend, rdb, storage.CacheOptions{})
	t.Cleanup(func() { _ = c.Close() })
	tn := mustCreateTenant(t, ctx, c, "acme", tenantctx.StatusActive)
	_, key, err := c.IssueAPIKey(ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.TenantBySlug(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TenantByID(ctx, tn.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TenantForAPIKey(ctx, key); err != nil {
		t.Fatal(err)
	}
}

// TestReadmeCacheCleanupFindsTheCacheKeys: the documented command to clear
// the tenant cache after Redis went back in time (docs/guarantees.md:
// redis-cli --scan --pattern ... | xargs redis-cli unlink) finds the
// cache's keys, on a single server and on a Redis Cluster, where the
// cache's prefix carries a hash tag. An operator who
// runs it after a failover lost a revocation must not be left with the
// revoked key's entry while believing it gone.
func TestReadmeCacheCleanupFindsTheCacheKeys(t *testing.T) {
	t.Parallel()
	pats := readmeCachePatterns(t)
	ctx := context.Background()
	found := func(t *testing.T, nodes []*redis.Client) {
		t.Helper()
		for _, p := range pats {
			for _, n := range nodes {
				if keys := scanAll(t, ctx, n, p); len(keys) > 0 {
					t.Logf("pattern %q finds %d keys, e.g. %q", p, len(keys), keys[0])
					return
				}
			}
		}
		t.Errorf("none of the patterns %q of docs/guarantees.md finds a tenant cache key", pats)
	}

	t.Run("single server", func(t *testing.T) {
		t.Parallel()
		rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t)})
		t.Cleanup(func() { _ = rdb.Close() })
		fillDefaultCache(t, ctx, rdb)
		found(t, []*redis.Client{rdb})
	})
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		cl := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{})
		crdb := cl.ClientT(t)
		fillDefaultCache(t, ctx, crdb)
		masters, err := cl.Masters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var nodes []*redis.Client
		for _, m := range masters {
			n := redis.NewClient(&redis.Options{Addr: m.Addr()})
			t.Cleanup(func() { _ = n.Close() })
			nodes = append(nodes, n)
		}
		found(t, nodes)
	})
}
