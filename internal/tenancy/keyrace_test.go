package tenancy_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/invoicing/tenantworker/internal/tenancy"
	"github.com/invoicing/tenantworker/storage"
	"github.com/invoicing/tenantworker/tenantctx"
)

// racyCatalog runs hook once, right after a TenantByID returned its answer:
// a concurrent admin call landing between a check and the write after it.
type racyCatalog struct {
	storage.Catalog
	mu   sync.Mutex
	hook func()
}

func (c *racyCatalog) TenantByID(ctx context.Context, id string) (tenantctx.Tenant, error) {
	tn, err := c.Catalog.TenantByID(ctx, id)
	c.mu.Lock()
	h := c.hook
	c.hook = nil
	c.mu.Unlock()
	if h != nil {
		h()
	}
	return tn, err
}

// TestKeyIssuedWhileDeletionIsRequested: a deletion requested between
// IssueKey's status check and its insert gets the refusal the check would
// have given, and the catalog makes no key: no key of a tenant being
// deleted is handed out, nor left for its deletion to find.
func TestKeyIssuedWhileDeletionIsRequested(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.active(t, "keyrace")
	before, err := b.catalog.ListAPIKeys(b.ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	rc := &racyCatalog{Catalog: b.catalog}
	svc := tenancy.New(tenancy.Config{Catalog: rc, Enqueuer: b.enqueuer, Documents: b.docs, SchemaPool: b.pool})
	var key string
	rc.hook = func() {
		if _, err := b.svc.RequestDeletion(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
			t.Error(err)
		}
	}
	key, _, err = svc.IssueKey(b.ctx, tn.ID, tenancy.ActorAdmin)
	if !errors.Is(err, tenancy.ErrRefused) {
		t.Fatalf("IssueKey racing a deletion request = %q, %v; want ErrRefused", key, err)
	}
	keys, err := b.catalog.ListAPIKeys(b.ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != len(before) {
		t.Fatalf("%d keys after the refused issue, %d before; want none made", len(keys), len(before))
	}
}

// storeHookCache is a tenant cache (storage.Cache) that runs hook once,
// right after a StoreAPIKey stored its key.
type storeHookCache struct {
	*storage.Cache
	hook func()
}

func (c *storeHookCache) StoreAPIKey(ctx context.Context, tenantID, key string) (storage.APIKey, error) {
	k, err := c.Cache.StoreAPIKey(ctx, tenantID, key)
	if h := c.hook; h != nil {
		c.hook = nil
		h()
	}
	return k, err
}

// TestKeyIssuedWhileAnotherServiceRequestsDeletion: a deletion requested
// through another service between IssueKey's insert and its check after
// it (the request waits for the insert's lock, then commits at once) gets
// the refusal a later call would have given, and the new key goes again,
// also when this service's tenant cache has not heard of the deletion yet
// (its invalidation message still on its way): the check reads the
// catalog, not the cache entry IssueKey's first check left.
func TestKeyIssuedWhileAnotherServiceRequestsDeletion(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.active(t, "keyrace-replica")
	// This service's cache, without Redis: no invalidation of the other
	// service reaches it, as none has yet when its check runs.
	cache := storage.NewCache(b.catalog, nil, storage.CacheOptions{LocalTTL: time.Minute})
	t.Cleanup(func() { _ = cache.Close() })
	hooked := &storeHookCache{Cache: cache, hook: func() {
		if _, err := b.svc.RequestDeletion(b.ctx, tn.ID, tenancy.ActorAdmin); err != nil {
			t.Error(err)
		}
	}}
	svc := tenancy.New(tenancy.Config{Catalog: hooked, Enqueuer: b.enqueuer, Documents: b.docs, SchemaPool: b.pool})
	key, _, err := svc.IssueKey(b.ctx, tn.ID, tenancy.ActorAdmin)
	if !errors.Is(err, tenancy.ErrRefused) {
		t.Errorf("IssueKey as another service requests the deletion = %q, %v; want ErrRefused", key, err)
	}
	keys, err := b.catalog.ListAPIKeys(b.ctx, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	// The last one is the key the call made (ids grow).
	if last := keys[len(keys)-1]; last.RevokedAt == nil {
		t.Errorf("the key made as the deletion was requested (%s...) is left valid", last.Prefix)
	}
}
