package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis layout, under CacheOptions.KeyPrefix (shown as P):
//
//	P id:<tenant id>        JSON cacheEntry, TTL RedisTTL or NegativeTTL
//	P id:<tenant id>:v      guard: a counter bumped by every invalidation
//	P slug:<slug>           JSON cacheEntry, likewise
//	P slug:<slug>:v         guard
//	P key:<sha-256 of key>  JSON cacheEntry holding a tenant id
//	P keygen                guard of every key:... entry (key writes are rare)
//	P tenantkeys:<id>       set of the key hashes cached for a tenant
//
// A miss reads the entry and its guard in one MGET, asks the backend, and
// stores the answer only if the guard still has the value it read
// (fillScript). An invalidation deletes the entry and bumps the guard
// (invalidateScript), so an answer read before a write is never stored
// after the write's invalidation: without the guard, a reader racing a
// delete could put the deleted tenant back for RedisTTL.
const (
	cacheKindID     = "id:"
	cacheKindSlug   = "slug:"
	cacheKindAPIKey = "key:"
	cacheKeyGen     = "keygen"
	cacheTenantKeys = "tenantkeys:"
	cacheGuard      = ":v"
	// cacheGuardTTL keeps guards long past any in-flight load, so a guard
	// never expires back to the "absent" a slow reader saw.
	cacheGuardTTL = time.Hour
)

// fillScript stores an entry if its guard is unchanged.
// KEYS[1] entry, KEYS[2] guard, KEYS[3] (optional) the tenant's key set.
// ARGV[1] guard value seen ("" when absent), ARGV[2] entry JSON, ARGV[3]
// TTL in ms, ARGV[4] member to add to KEYS[3]. The key set's TTL only
// grows, so that processes with different TTLs (TENANT_CACHE_TTL changed
// in a rolling deploy) never let it expire before an entry it lists.
var fillScript = redis.NewScript(`
local g = redis.call('GET', KEYS[2])
if not g then g = '' end
if g ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if #KEYS >= 3 then
  -- The set must outlive every entry it lists, or a revocation would miss
  -- one: a process with a shorter TTL never shortens it.
  redis.call('SADD', KEYS[3], ARGV[4])
  if redis.call('PTTL', KEYS[3]) < tonumber(ARGV[3]) then
    redis.call('PEXPIRE', KEYS[3], ARGV[3])
  end
end
return 1
`)

// invalidateScript deletes entries and bumps their guards.
// KEYS are pairs: entry, guard. ARGV[1] guard TTL in ms, ARGV[2] a random
// integer a missing guard starts from (not 0: a guard that expired, or
// that Redis lost, must not come back to a value a reader saw before).
var invalidateScript = redis.NewScript(`
for i = 1, #KEYS, 2 do
  redis.call('DEL', KEYS[i])
  if redis.call('EXISTS', KEYS[i+1]) == 0 then
    redis.call('SET', KEYS[i+1], ARGV[2])
  end
  redis.call('INCR', KEYS[i+1])
  redis.call('PEXPIRE', KEYS[i+1], ARGV[1])
end
return 1
`)

// revokeScript drops every cached API key entry of one tenant.
// KEYS[1] the tenant's key set, KEYS[2] the keygen guard. ARGV[1] the
// prefix of key entries, ARGV[2] guard TTL in ms, ARGV[3] the random start
// of a missing guard (see invalidateScript). It deletes before it bumps
// the guard, as invalidateScript does: at maxmemory (policy noeviction)
// Redis refuses a script whose first write may grow memory (SET, INCR)
// and lets through one whose first write deletes, with the writes after
// it, so a revocation drops the keys at maxmemory too.
var revokeScript = redis.NewScript(`
local hashes = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
for _, h in ipairs(hashes) do
  redis.call('DEL', ARGV[1] .. h)
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[2], ARGV[3])
end
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return #hashes
`)

// redisKey returns the Redis key of a logical cache key.
func (c *Cache) redisKey(key string) string { return c.opts.KeyPrefix + key }

// guardKey returns the Redis key of the guard of a logical cache key.
func (c *Cache) guardKey(key string) string {
	if strings.HasPrefix(key, cacheKindAPIKey) {
		return c.opts.KeyPrefix + cacheKeyGen
	}
	return c.opts.KeyPrefix + key + cacheGuard
}

// redisRead returns the entry of key from Redis, if there is one, and the
// guard value to fill with. ok is false when Redis is unusable.
func (c *Cache) redisRead(ctx context.Context, key string) (e cacheEntry, hit bool, guard string, ok bool) {
	if c.rdb == nil || !c.redisUsable() {
		return cacheEntry{}, false, "", false
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.RedisTimeout)
	defer cancel()
	vals, err := c.rdb.MGet(ctx, c.redisKey(key), c.guardKey(key)).Result()
	if err != nil {
		c.redisFailed(ctx, &c.redisOutage, &c.redisDownTo, key, err)
		return cacheEntry{}, false, "", false
	}
	c.redisWorks(ctx, &c.redisOutage)
	guard, _ = vals[1].(string)
	raw, present := vals[0].(string)
	if !present {
		return cacheEntry{}, false, guard, true
	}
	if err := json.Unmarshal([]byte(raw), &e); err != nil || !e.valid() {
		// Treated as a miss; the fill overwrites it.
		c.log.WarnContext(ctx, "tenant cache: undecodable redis entry", slog.String("key", printableKey(key)), slog.Any("error", err))
		return cacheEntry{}, false, guard, true
	}
	if e.lacksGeneration() {
		// Written by the previous release, whose tenants did not carry
		// their database's registration: with it, a process would use
		// whichever pool of that name it has open. Treated as a miss; the
		// fill replaces it with the catalog's answer, which carries it.
		c.log.DebugContext(ctx, "tenant cache: redis entry without the database's registration, reading the catalog",
			slog.String("key", printableKey(key)))
		return cacheEntry{}, false, guard, true
	}
	if e.lacksTimeZone() {
		// Written by a release without tenant time zones (one still
		// running during a rolling upgrade may cache a tenant after its
		// zone changed): served, it would judge due dates in UTC. Treated
		// as a miss, as above.
		c.log.DebugContext(ctx, "tenant cache: redis entry without the tenant's time zone, reading the catalog",
			slog.String("key", printableKey(key)))
		return cacheEntry{}, false, guard, true
	}
	return e, true, guard, true
}

// redisFill stores e under key unless the guard moved on from guard. It
// skips Redis for RedisBackoff after a failed fill (redisFailed).
func (c *Cache) redisFill(ctx context.Context, key, guard string, e cacheEntry) {
	if int64(c.elapsed()) < c.fillDownTo.Load() {
		return
	}
	raw, err := json.Marshal(e)
	if err != nil {
		c.log.ErrorContext(ctx, "tenant cache: encode entry", slog.String("key", printableKey(key)), slog.Any("error", err))
		return
	}
	ttl := c.opts.RedisTTL
	if !e.Found {
		ttl = c.opts.NegativeTTL
	}
	keys := []string{c.redisKey(key), c.guardKey(key)}
	args := []any{guard, raw, ttl.Milliseconds()}
	if hash, isAPIKey := strings.CutPrefix(key, cacheKindAPIKey); isAPIKey && e.Found {
		keys = append(keys, c.redisKey(cacheTenantKeys+e.TenantID))
		args = append(args, hash)
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.RedisTimeout)
	defer cancel()
	if err := fillScript.Run(ctx, c.rdb, keys, args...).Err(); err != nil {
		c.redisFailed(ctx, &c.fillOutage, &c.fillDownTo, key, err)
		return
	}
	c.redisWorks(ctx, &c.fillOutage)
}

// redisInvalidate deletes keys and bumps their guards, and drops the cached
// API keys of keysOfTenant when it is set. It returns what failed (after
// logging it).
func (c *Cache) redisInvalidate(ctx context.Context, keys []string, keysOfTenant string) error {
	if c.rdb == nil {
		return nil
	}
	var errs []error
	guardTTL := cacheGuardTTL.Milliseconds()
	if len(keys) > 0 {
		pairs := make([]string, 0, 2*len(keys))
		for _, k := range keys {
			pairs = append(pairs, c.redisKey(k), c.guardKey(k))
		}
		if err := invalidateScript.Run(ctx, c.rdb, pairs, guardTTL, guardSeed()).Err(); err != nil {
			printable := make([]string, len(keys))
			for i, k := range keys {
				printable[i] = printableKey(k)
			}
			c.redisWriteFailed(ctx, "invalidate", strings.Join(printable, ","), err)
			errs = append(errs, fmt.Errorf("invalidate %s in redis: %w", strings.Join(printable, ","), err))
		}
	}
	if keysOfTenant != "" {
		keys := []string{c.redisKey(cacheTenantKeys + keysOfTenant), c.opts.KeyPrefix + cacheKeyGen}
		if err := revokeScript.Run(ctx, c.rdb, keys, c.redisKey(cacheKindAPIKey), guardTTL, guardSeed()).Err(); err != nil {
			c.redisWriteFailed(ctx, "invalidate api keys", cacheTenantKeys+keysOfTenant, err)
			errs = append(errs, fmt.Errorf("invalidate api keys of tenant %s in redis: %w", keysOfTenant, err))
		}
	}
	return errors.Join(errs...)
}

// guardSeed returns the random value a missing guard starts from: a
// decimal integer below 2^62, so INCR (of this and older releases) never
// overflows it, and a guard reset by its expiry or a Redis that lost it
// never comes back to a value an in-flight reader saw.
func guardSeed() string { return strconv.FormatUint(mrand.Uint64()>>2, 10) }

// redisUsable reports whether reads should try Redis: not within
// RedisBackoff of a failed read, measured on the monotonic clock
// (c.elapsed), which a step of the wall clock does not move.
func (c *Cache) redisUsable() bool {
	return int64(c.elapsed()) >= c.redisDownTo.Load()
}

// redisFailLogEvery is how often at most the cache logs that its Redis
// reads, or its fills, keep failing.
const redisFailLogEvery = time.Minute

// redisOutage is what the cache logs of failing Redis reads (or fills):
// since when they fail (zero while they work), when that was last logged,
// and how many failed since.
type redisOutage struct {
	kind      string // "read" or "fill", in the lines logged
	meanwhile string // what the cache does while they fail, in the lines logged

	mu             sync.Mutex
	since, logged  time.Time
	failedSinceLog int
	failing        atomic.Bool // since is set: one that works logs the end
}

// failed notes a failure at now. It reports whether to log it (log): when
// the failures begin (first), then at most once per redisFailLogEvery,
// with since when they fail and how many failed since the last line.
func (o *redisOutage) failed(now time.Time) (first bool, since time.Time, failed int, log bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	first = o.since.IsZero()
	if !first && now.Sub(o.logged) < redisFailLogEvery {
		o.failedSinceLog++
		return false, o.since, 0, false
	}
	if first {
		o.since = now
		o.failing.Store(true)
	}
	since, failed = o.since, o.failedSinceLog+1
	o.logged, o.failedSinceLog = now, 0
	return first, since, failed, true
}

// works notes a success; it reports whether it ended failures (ended),
// and since when they failed. Without failures it costs an atomic load.
func (o *redisOutage) works() (since time.Time, ended bool) {
	if !o.failing.Load() {
		return time.Time{}, false
	}
	o.mu.Lock()
	since = o.since
	o.since, o.failedSinceLog = time.Time{}, 0
	o.failing.Store(false)
	o.mu.Unlock()
	return since, !since.IsZero()
}

// redisFailed counts a failed Redis call of the kind o logs (reads, or
// fills), makes calls of that kind skip Redis for RedisBackoff (downTo),
// and logs it once per outage, not once per lookup or backoff: a call is
// tried again after every backoff for as long as Redis fails it (down, or,
// for fills, answering reads but refusing writes: at maxmemory with
// noeviction, a replica, a master short of the replicas
// min-replicas-to-write asks for). It logs when the failures begin, then
// at most once per redisFailLogEvery while they go on (redisWorks logs
// their end), with the lookup's ctx (a task's attributes, on a worker).
func (c *Cache) redisFailed(ctx context.Context, o *redisOutage, downTo *atomic.Int64, key string, err error) {
	c.stats.redisErrors.Add(1)
	now := time.Now()
	prev := downTo.Load()
	downTo.CompareAndSwap(prev, int64(c.elapsed()+c.opts.RedisBackoff))
	first, since, failed, log := o.failed(now)
	switch {
	case !log:
	case first:
		c.log.WarnContext(ctx, "tenant cache: redis "+o.kind+" failed, "+o.meanwhile,
			slog.String("key", printableKey(key)), slog.Duration("retry_after", c.opts.RedisBackoff), slog.Any("error", err))
	default:
		c.log.WarnContext(ctx, "tenant cache: redis "+o.kind+"s still fail, "+o.meanwhile,
			slog.String("key", printableKey(key)), slog.Duration("failing_for", now.Sub(since).Round(time.Second)),
			slog.Int("failed_"+o.kind+"s", failed), slog.Any("error", err))
	}
}

// redisWorks logs, after calls of the kind o logs that failed, that one
// worked again.
func (c *Cache) redisWorks(ctx context.Context, o *redisOutage) {
	if since, ended := o.works(); ended {
		c.log.InfoContext(ctx, "tenant cache: redis "+o.kind+"s work again", slog.Duration("failed_for", time.Since(since).Round(time.Millisecond)))
	}
}

// printableKey returns a logical cache key as logs and errors show it: an
// API key's entry without the key's hash (the form the catalog stores and
// looks keys up by), tenants' entries as they are.
func printableKey(key string) string {
	if strings.HasPrefix(key, cacheKindAPIKey) {
		return cacheKindAPIKey + "(hash)"
	}
	return key
}

// redisWriteFailed counts and logs a failed invalidation or publish,
// with the write's ctx.
func (c *Cache) redisWriteFailed(ctx context.Context, op, key string, err error) {
	c.stats.redisErrors.Add(1)
	c.log.WarnContext(ctx, fmt.Sprintf("tenant cache: redis %s failed", op), slog.String("key", printableKey(key)), slog.Any("error", err))
}

// valid reports whether a decoded entry is complete.
func (e cacheEntry) valid() bool {
	return !e.Found || e.Tenant != nil || e.TenantID != ""
}

// lacksTimeZone reports whether e holds a tenant without a time zone
// (tenantctx.Tenant.TimeZone ""): an entry a release without tenant time
// zones wrote. The catalog gives every tenant one (NOT NULL, default UTC).
func (e cacheEntry) lacksTimeZone() bool {
	return e.Found && e.Tenant != nil && e.Tenant.TimeZone == ""
}

// lacksGeneration reports whether e holds a tenant without the number of
// its database's registration (tenantctx.Tenant.DatabaseGeneration, 0):
// an entry the previous release wrote, before tenants carried it. The
// catalog gives every tenant its database's number (at least 1), except
// for a registration its statement did not see yet; such an answer is
// cached all the same, and read again from the catalog on its next Redis
// hit.
func (e cacheEntry) lacksGeneration() bool {
	return e.Found && e.Tenant != nil && e.Tenant.DatabaseGeneration == 0
}
