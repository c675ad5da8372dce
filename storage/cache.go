package storage

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
)

// Defaults of CacheOptions.
const (
	DefaultCacheLocalTTL      = time.Second
	DefaultCacheRedisTTL      = 5 * time.Minute
	DefaultCacheNegativeTTL   = 5 * time.Second
	DefaultCacheKeyPrefix     = "tenantcache:"
	DefaultCacheLocalEntries  = 100_000
	DefaultCacheLoadTimeout   = 10 * time.Second
	DefaultCacheRedisBackoff  = time.Second
	DefaultCacheRedisTimeout  = 200 * time.Millisecond
	cacheInvalidateChannelKey = "invalidate"
)

// CacheOptions configures a Cache. The zero value is usable: every field
// has a documented default.
type CacheOptions struct {
	// LocalTTL is how long an entry lives in the in-process layer; 0 means
	// DefaultCacheLocalTTL, a negative value turns the layer off. Keep it
	// short: it bounds how long a missed invalidation message goes
	// unnoticed, so with the default a revoked key or a suspended tenant is
	// refused by every instance within 1 s even then (P18 in
	// docs/architecture.md).
	LocalTTL time.Duration
	// RedisTTL is how long an entry lives in Redis; 0 means
	// DefaultCacheRedisTTL.
	RedisTTL time.Duration
	// NegativeTTL is how long "not found" is cached for an unknown id, slug
	// or API key, in both layers (the local layer uses the smaller of it and
	// LocalTTL); 0 means DefaultCacheNegativeTTL.
	NegativeTTL time.Duration
	// KeyPrefix starts every Redis key; "" means DefaultCacheKeyPrefix.
	// Tests use a unique prefix each. The cache's reads and scripts touch
	// several keys at once, so on Redis Cluster they must share a hash
	// slot: when rdb is a *redis.ClusterClient and KeyPrefix has no hash
	// tag, NewCache makes the prefix one ("tenantcache:" becomes
	// "{tenantcache}:"), which puts the whole cache on one slot. On a
	// single server the prefix is kept as given.
	KeyPrefix string
	// Channel is the pub/sub channel of invalidation messages; "" means
	// KeyPrefix + "invalidate".
	Channel string
	// LocalMaxEntries bounds the in-process layer; 0 means
	// DefaultCacheLocalEntries.
	LocalMaxEntries int
	// LoadTimeout bounds one shared miss (Redis and backend); it runs
	// detached from the first caller's cancellation because other callers
	// wait for the same result. 0 means DefaultCacheLoadTimeout.
	LoadTimeout time.Duration
	// RedisBackoff is how long reads skip Redis after a Redis read error
	// (they go to the backend meanwhile), and fills after a failed fill (a
	// Redis that answers reads and refuses writes: at maxmemory, a
	// replica). Failing reads, and failing fills, are logged when they
	// begin, at most once a minute while they last, and when one works
	// again, not once per backoff. 0 means DefaultCacheRedisBackoff.
	// Writes always try to invalidate Redis.
	RedisBackoff time.Duration
	// RedisTimeout bounds each Redis read and fill of a lookup, so a Redis
	// outage costs a lookup at most this (go-redis would otherwise retry
	// its dials for seconds); 0 means DefaultCacheRedisTimeout. It cuts a
	// stalled socket read only on a client with ContextTimeoutEnabled;
	// otherwise the client's ReadTimeout does.
	RedisTimeout time.Duration
	// Logger receives warnings about Redis failures and, once per tenant
	// and zone, about a tenant whose time zone this build does not know
	// (its due dates are judged in UTC); nil discards them.
	Logger *slog.Logger
}

// withDefaults returns o with every zero field set to its default. A
// negative duration or size, meaningless except for LocalTTL, counts as
// zero.
func (o CacheOptions) withDefaults() CacheOptions {
	o.LocalTTL = cmp.Or(o.LocalTTL, DefaultCacheLocalTTL)
	o.RedisTTL = cmp.Or(max(o.RedisTTL, 0), DefaultCacheRedisTTL)
	o.NegativeTTL = cmp.Or(max(o.NegativeTTL, 0), DefaultCacheNegativeTTL)
	o.KeyPrefix = cmp.Or(o.KeyPrefix, DefaultCacheKeyPrefix)
	o.Channel = cmp.Or(o.Channel, o.KeyPrefix+cacheInvalidateChannelKey)
	o.LocalMaxEntries = cmp.Or(max(o.LocalMaxEntries, 0), DefaultCacheLocalEntries)
	o.LoadTimeout = cmp.Or(max(o.LoadTimeout, 0), DefaultCacheLoadTimeout)
	o.RedisBackoff = cmp.Or(max(o.RedisBackoff, 0), DefaultCacheRedisBackoff)
	o.RedisTimeout = cmp.Or(max(o.RedisTimeout, 0), DefaultCacheRedisTimeout)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// CacheStats counts how lookups were answered.
type CacheStats struct {
	// LocalHits and RedisHits are lookups answered by that layer.
	LocalHits int64
	RedisHits int64
	// Misses are lookups that went to the backend (shared misses count once).
	Misses int64
	// NegativeHits are hits, in either layer, on a cached "not found"; they
	// are also counted in LocalHits or RedisHits.
	NegativeHits int64
	// RedisErrors counts failed Redis operations (reads, fills,
	// invalidations, publishes).
	RedisErrors int64
}

// cacheCounters are the atomics behind CacheStats.
type cacheCounters struct {
	localHits, redisHits, misses, negativeHits, redisErrors atomic.Int64
}

// Cache is a Catalog in front of another: an in-process layer with a short
// TTL, then Redis, then the backend. TenantByID, TenantBySlug and
// TenantForAPIKey read through both layers (API keys cached by their
// SHA-256, never the plaintext) and cache "not found" briefly; a burst of
// misses for one key costs one backend query. Writes go to the backend, then
// invalidate the tenant's id and slug (or its API keys) in Redis and in the
// local layer, and publish the invalidation so other Cache instances drop
// their local entries. A Redis failure never fails a lookup: it falls back
// to the backend. It does fail the writes that revoke access (SetStatus,
// DeleteTenant, RevokeAPIKey, RevokeAPIKeys): when their invalidation
// cannot be applied in Redis or published, they return an error wrapping
// ErrInvalidationFailed instead of leaving other instances serving the old
// answer for up to RedisTTL without anyone knowing.
//
// NewCache starts a subscriber goroutine; Close stops it.
type Cache struct {
	backend  Catalog
	rdb      redis.UniversalClient // nil: local layer only
	opts     CacheOptions
	log      *slog.Logger
	instance string // tells this instance's own invalidation messages apart

	local       *localCache // stores nothing when LocalTTL < 0
	flight      singleflight.Group
	stats       cacheCounters
	redisDownTo atomic.Int64 // until which reads skip Redis, on elapsed (ns)
	fillDownTo  atomic.Int64 // until which fills skip Redis, on elapsed (ns)
	// elapsed reads the monotonic clock the backoffs are measured on: the
	// time since the cache was made. A wall clock's reading (UnixNano)
	// would make an NTP step back right after a failure stretch the
	// backoff by the step, every lookup skipping Redis unlogged.
	elapsed     func() time.Duration
	redisOutage redisOutage // what is logged of failing reads
	fillOutage  redisOutage // what is logged of failing fills

	// pending counts the invalidations under way (invalidate), also those
	// whose caller stopped waiting at its deadline.
	pending sync.WaitGroup

	// unknownZones holds tenantID+"\x00"+zone of each tenant met with a
	// time zone this build does not know, warned about once
	// (warnUnknownZone).
	unknownZones sync.Map

	stop           context.CancelFunc
	done           chan struct{}
	closeOnce      sync.Once
	subscribed     chan struct{} // closed once the first subscription stands
	subscribedOnce sync.Once
}

var _ Catalog = (*Cache)(nil)

// NewCache returns a cache in front of backend using rdb, and starts the
// goroutine that receives invalidation messages of other instances. A nil
// rdb gives a cache with only the in-process layer. Call Close when done; it
// does not close backend or rdb.
func NewCache(backend Catalog, rdb redis.UniversalClient, opts CacheOptions) *Cache {
	opts = opts.withDefaults()
	if _, cluster := rdb.(*redis.ClusterClient); cluster {
		opts.KeyPrefix = clusterKeyPrefix(opts.KeyPrefix)
	}
	var id [8]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails (Go 1.24+).
	c := &Cache{
		backend:    backend,
		rdb:        rdb,
		opts:       opts,
		log:        opts.Logger.With(slog.String("component", "tenant_cache")),
		instance:   hex.EncodeToString(id[:]),
		done:       make(chan struct{}),
		subscribed: make(chan struct{}),
	}
	made := time.Now() // keeps the monotonic reading time.Since measures on
	c.elapsed = func() time.Duration { return time.Since(made) }
	c.redisOutage.kind, c.redisOutage.meanwhile = "read", "answering from the backend"
	c.fillOutage.kind, c.fillOutage.meanwhile = "fill", "not filling"
	c.local = newLocalCache(opts.LocalMaxEntries)
	if rdb == nil || opts.LocalTTL < 0 {
		// Without Redis there is nobody to hear from; without a local layer
		// there is nothing to drop.
		c.stop = func() {}
		close(c.done)
		close(c.subscribed)
		return c
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	ps := rdb.Subscribe(ctx, opts.Channel)
	go c.receiveInvalidations(ctx, ps)
	return c
}

// clusterKeyPrefix returns prefix with a hash tag: prefix itself when it
// has one ("{...}" with something between the braces, where Redis Cluster
// looks for it), else the prefix without its trailing colon in braces,
// plus the colon.
func clusterKeyPrefix(prefix string) string {
	if open := strings.IndexByte(prefix, '{'); open >= 0 {
		if end := strings.IndexByte(prefix[open+1:], '}'); end > 0 {
			return prefix
		}
	}
	return "{" + strings.TrimSuffix(prefix, ":") + "}:"
}

// Close stops the invalidation subscriber and waits for it. It is safe to
// call more than once.
func (c *Cache) Close() error {
	c.closeOnce.Do(func() {
		c.stop()
		<-c.done
	})
	return nil
}

// Stats returns the counters of this instance.
func (c *Cache) Stats() CacheStats {
	return CacheStats{
		LocalHits:    c.stats.localHits.Load(),
		RedisHits:    c.stats.redisHits.Load(),
		Misses:       c.stats.misses.Load(),
		NegativeHits: c.stats.negativeHits.Load(),
		RedisErrors:  c.stats.redisErrors.Load(),
	}
}

// Uncached returns the catalog the cache is in front of, for a read that
// must see the latest committed row, such as a check made under a lock.
func (c *Cache) Uncached() Catalog { return c.backend }
