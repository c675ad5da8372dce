package storage_test

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/testenv"
	"github.com/invoicing/tenantworker/storage"
)

// TestCacheManyUnknownNamesStayBounded looks up 50,000 slugs no tenant
// has and as many unknown API keys, as a client trying random subdomains
// and keys would: the in-process layer stays within LocalMaxEntries, and
// the "not found" entries in Redis expire (NegativeTTL), so neither layer
// grows with the names clients make up.
func TestCacheManyUnknownNamesStayBounded(t *testing.T) {
	t.Parallel()
	e := newCacheEnv(t, testenv.Redis(t))
	const bound = 1000
	c := e.cache(t, storage.CacheOptions{LocalMaxEntries: bound, NegativeTTL: 5 * time.Second})
	ctx := t.Context()
	const n, workers = 50_000, 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if _, err := c.TenantBySlug(ctx, fmt.Sprintf("nosuch%d", i)); !isNotFound(err) {
					errs <- fmt.Errorf("slug #%d: %v, want not found", i, err)
					return
				}
				var raw [32]byte
				binary.BigEndian.PutUint64(raw[:], uint64(i))
				key := storage.APIKeyPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
				if _, err := c.TenantForAPIKey(ctx, key); !isNotFound(err) {
					errs <- fmt.Errorf("key #%d: %v, want not found", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := c.LocalLen(); got > bound {
		t.Errorf("after %d unknown slugs and keys the local layer holds %d entries, bound %d", n, got, bound)
	}
	if _, err := c.TenantBySlug(ctx, "nosuchlast"); !isNotFound(err) {
		t.Fatalf("slug nosuchlast: %v, want not found", err)
	}
	ttl, err := e.rdb.PTTL(ctx, c.RedisKeyForSlug("nosuchlast")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 0 || ttl > 5*time.Second {
		t.Errorf("a not-found entry in Redis lives %v, want at most the negative TTL", ttl)
	}
}
