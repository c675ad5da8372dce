package storage

import (
	"context"
	"time"
)

// WaitSubscribed blocks until c's invalidation subscriber has subscribed
// (at once for a cache without one), so a test's writes through another
// instance cannot be published before c listens.
func (c *Cache) WaitSubscribed(ctx context.Context) error {
	select {
	case <-c.subscribed:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// RedisKeyForSlug returns the Redis key of the cache entry of slug.
func (c *Cache) RedisKeyForSlug(slug string) string { return c.redisKey(cacheKindSlug + slug) }

// RedisKeyForID returns the Redis key of the cache entry of a tenant id.
func (c *Cache) RedisKeyForID(id string) string { return c.redisKey(cacheKindID + id) }

// LocalLen returns the number of entries in c's in-process layer,
// expired ones included.
func (c *Cache) LocalLen() int { return c.local.len() }

// SetMonotonicClock makes c measure its Redis backoffs on elapsed instead
// of the time since it was made; call it before c's first lookup.
func (c *Cache) SetMonotonicClock(elapsed func() time.Duration) { c.elapsed = elapsed }
