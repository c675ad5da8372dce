package storage

import (
	"sync"
	"time"

	"github.com/invoicing/tenantworker/tenantctx"
)

// cacheEntry is what both cache layers hold for one key: a tenant (id and
// slug keys), a tenant id (API key hashes), or "not found".
type cacheEntry struct {
	Found    bool              `json:"found"`
	Tenant   *tenantctx.Tenant `json:"tenant,omitempty"`
	TenantID string            `json:"tenant_id,omitempty"`
}

// localItem is a cacheEntry with its expiry.
type localItem struct {
	entry   cacheEntry
	expires time.Time
}

// localCache is the in-process layer: a bounded map with expiry.
//
// epoch counts invalidations. A reader notes the epoch before it asks Redis
// or the backend and stores what it got only if no invalidation happened in
// between (setIfEpoch), so a value read before a write can never be stored
// after that write's invalidation.
type localCache struct {
	mu         sync.RWMutex
	items      map[string]localItem
	maxEntries int
	epoch      uint64
}

func newLocalCache(maxEntries int) *localCache {
	return &localCache{items: make(map[string]localItem), maxEntries: maxEntries}
}

// get returns the live entry for key.
func (l *localCache) get(key string, now time.Time) (cacheEntry, bool) {
	l.mu.RLock()
	it, ok := l.items[key]
	l.mu.RUnlock()
	if !ok || !now.Before(it.expires) {
		return cacheEntry{}, false
	}
	return it.entry, true
}

// currentEpoch returns the invalidation epoch to pass to setIfEpoch.
func (l *localCache) currentEpoch() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.epoch
}

// setIfEpoch stores e under key for ttl unless an invalidation happened
// since epoch was read or ttl is not positive (the layer is off). It
// reports whether it stored.
func (l *localCache) setIfEpoch(key string, e cacheEntry, ttl time.Duration, epoch uint64, now time.Time) bool {
	if ttl <= 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.epoch != epoch {
		return false
	}
	if _, exists := l.items[key]; !exists && len(l.items) >= l.maxEntries {
		l.evictLocked(now)
	}
	l.items[key] = localItem{entry: e, expires: now.Add(ttl)}
	return true
}

// evictLocked makes room: it drops expired entries and, if that is not
// enough, arbitrary ones (map order is random) down to 90% of the bound.
func (l *localCache) evictLocked(now time.Time) {
	for k, it := range l.items {
		if !now.Before(it.expires) {
			delete(l.items, k)
		}
	}
	target := l.maxEntries - l.maxEntries/10
	for k := range l.items {
		if len(l.items) < target {
			break
		}
		delete(l.items, k)
	}
}

// drop invalidates keys and the entries of the API keys of tenantIDs.
func (l *localCache) drop(keys []string, keysOfTenants []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.epoch++
	for _, k := range keys {
		delete(l.items, k)
	}
	if len(keysOfTenants) == 0 {
		return
	}
	for k, it := range l.items {
		if it.entry.TenantID == "" {
			continue
		}
		for _, id := range keysOfTenants {
			if it.entry.TenantID == id {
				delete(l.items, k)
				break
			}
		}
	}
}

// clear invalidates everything, e.g. after invalidation messages may have
// been missed.
func (l *localCache) clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.epoch++
	clear(l.items)
}

// len returns the number of entries, expired ones included.
func (l *localCache) len() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.items)
}
