package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/invoicing/tenantworker/tenantctx"
)

// Tenant returns the tenant with the given id, or ErrNotFound; an invalid id
// is ErrNotFound without any query.
func (c *Cache) TenantByID(ctx context.Context, id string) (tenantctx.Tenant, error) {
	if len(id) > tenantctx.MaxIDLen { // before hashing it for a map lookup
		return tenantctx.Tenant{}, fmt.Errorf("tenant: %w: %w", ErrNotFound, tenantctx.ErrInvalidID)
	}
	key := cacheKindID + id
	e, ok := c.localHit(key)
	if !ok {
		// Only validated ids are ever cached, so a hit needs no validation.
		if err := tenantctx.ValidateID(id); err != nil {
			return tenantctx.Tenant{}, fmt.Errorf("tenant: %w: %w", ErrNotFound, err)
		}
		var err error
		e, err = c.lookup(ctx, key, func(ctx context.Context) (cacheEntry, error) {
			return tenantEntry(c.backend.TenantByID(ctx, id))
		})
		if err != nil {
			return tenantctx.Tenant{}, fmt.Errorf("tenant %s: %w", id, err)
		}
	}
	if !e.Found {
		return tenantctx.Tenant{}, fmt.Errorf("tenant %s: %w", id, ErrNotFound)
	}
	return *e.Tenant, nil
}

// TenantBySlug returns the tenant with the given slug, or ErrNotFound; an
// invalid slug is ErrNotFound without any query.
func (c *Cache) TenantBySlug(ctx context.Context, slug string) (tenantctx.Tenant, error) {
	if len(slug) > tenantctx.MaxSlugLen { // before hashing it for a map lookup
		return tenantctx.Tenant{}, fmt.Errorf("tenant by slug: %w: %w", ErrNotFound, tenantctx.ErrInvalidSlug)
	}
	key := cacheKindSlug + slug
	e, ok := c.localHit(key)
	if !ok {
		// Only validated slugs are ever cached, so a hit needs no validation.
		if err := tenantctx.ValidateSlug(slug); err != nil {
			return tenantctx.Tenant{}, fmt.Errorf("tenant by slug: %w: %w", ErrNotFound, err)
		}
		var err error
		e, err = c.lookup(ctx, key, func(ctx context.Context) (cacheEntry, error) {
			return tenantEntry(c.backend.TenantBySlug(ctx, slug))
		})
		if err != nil {
			return tenantctx.Tenant{}, fmt.Errorf("tenant by slug %s: %w", slug, err)
		}
	}
	if !e.Found {
		return tenantctx.Tenant{}, fmt.Errorf("tenant by slug %s: %w", slug, ErrNotFound)
	}
	return *e.Tenant, nil
}

// TenantForAPIKey returns the id of the tenant owning key, or ErrNotFound
// for a malformed (without any query), unknown or revoked key. Both layers
// know the key only by its SHA-256.
func (c *Cache) TenantForAPIKey(ctx context.Context, key string) (string, error) {
	if err := CheckAPIKeyFormat(key); err != nil {
		return "", fmt.Errorf("tenant for api key: %w", err)
	}
	ckey := cacheKindAPIKey + HashAPIKey(key)
	if e, ok := c.localHit(ckey); ok {
		return apiKeyResult(e)
	}
	e, err := c.lookup(ctx, ckey, func(ctx context.Context) (cacheEntry, error) {
		id, err := c.backend.TenantForAPIKey(ctx, key)
		switch {
		case errors.Is(err, ErrNotFound):
			return cacheEntry{}, nil
		case err != nil:
			return cacheEntry{}, err
		}
		return cacheEntry{Found: true, TenantID: id}, nil
	})
	if err != nil {
		return "", fmt.Errorf("tenant for api key: %w", err)
	}
	return apiKeyResult(e)
}

// apiKeyResult turns an API key entry into TenantForAPIKey's answer.
func apiKeyResult(e cacheEntry) (string, error) {
	if !e.Found {
		return "", fmt.Errorf("tenant for api key: %w", ErrNotFound)
	}
	return e.TenantID, nil
}

// tenantEntry turns a backend answer into a cache entry: ErrNotFound is a
// negative entry, any other error is not cached.
func tenantEntry(t tenantctx.Tenant, err error) (cacheEntry, error) {
	switch {
	case errors.Is(err, ErrNotFound):
		return cacheEntry{}, nil
	case err != nil:
		return cacheEntry{}, err
	}
	return cacheEntry{Found: true, Tenant: &t}, nil
}

// lookup answers key from the local layer, else from Redis or load, with
// concurrent misses of one key sharing one Redis read and one load.
//
// The flight is keyed by the key and the local invalidation epoch, so a
// lookup that starts after an invalidation never joins a flight that
// started before it and might return the old value.
func (c *Cache) lookup(ctx context.Context, key string, load func(context.Context) (cacheEntry, error)) (cacheEntry, error) {
	if e, ok := c.localHit(key); ok {
		return e, nil
	}
	epoch := c.local.currentEpoch()
	ch := c.flight.DoChan(key+"#"+strconv.FormatUint(epoch, 10), func() (any, error) {
		// Detached from the first caller's cancellation: others wait too.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.LoadTimeout)
		defer cancel()
		return c.fetch(fctx, key, epoch, load)
	})
	select {
	case <-ctx.Done():
		return cacheEntry{}, context.Cause(ctx)
	case r := <-ch:
		if r.Err != nil {
			return cacheEntry{}, r.Err
		}
		return r.Val.(cacheEntry), nil
	}
}

// localHit returns the live local entry of key, counting the hit.
func (c *Cache) localHit(key string) (cacheEntry, bool) {
	e, ok := c.local.get(key, time.Now())
	if ok {
		c.stats.localHits.Add(1)
		if !e.Found {
			c.stats.negativeHits.Add(1)
		}
	}
	return e, ok
}

// fetch answers a local miss from Redis or, failing that, from load (once
// ctx's load gate, WithLoadGate, let it), and stores the answer in the
// layers it missed.
func (c *Cache) fetch(ctx context.Context, key string, epoch uint64, load func(context.Context) (cacheEntry, error)) (cacheEntry, error) {
	e, hit, guard, redisOK := c.redisRead(ctx, key)
	if hit {
		c.stats.redisHits.Add(1)
		if !e.Found {
			c.stats.negativeHits.Add(1)
		}
		c.warnUnknownZone(ctx, e)
		c.storeLocal(key, e, epoch)
		return e, nil
	}
	if err := PassLoadGate(ctx); err != nil {
		return cacheEntry{}, err
	}
	c.stats.misses.Add(1)
	e, err := load(ctx)
	if err != nil {
		return cacheEntry{}, err
	}
	if redisOK {
		c.redisFill(ctx, key, guard, e)
	}
	c.warnUnknownZone(ctx, e)
	c.storeLocal(key, e, epoch)
	return e, nil
}

// warnUnknownZone logs a warning, the first time this cache (a process
// has one) meets the tenant of e with a time zone this build does not
// know (tenantctx.Tenant.TimeZoneKnown: a name a newer release stored),
// that its invoices' due dates are judged in UTC (Location) until a build
// that knows the zone runs; once per tenant and zone, not per lookup or
// task. It runs where an entry comes from Redis or the backend, never on
// a local hit: a task's lookup costs nothing more. It logs with ctx, the
// look-up's, so that the line carries the attributes of the task (or the
// request) whose look-up met the zone (internal/logctx).
func (c *Cache) warnUnknownZone(ctx context.Context, e cacheEntry) {
	if !e.Found || e.Tenant == nil || e.Tenant.TimeZoneKnown() {
		return
	}
	t := e.Tenant
	if _, seen := c.unknownZones.LoadOrStore(t.ID+"\x00"+t.TimeZone, struct{}{}); seen {
		return
	}
	c.log.WarnContext(ctx, "tenant time zone unknown to this build: its invoices' due dates are judged in UTC until a build that knows the zone runs",
		slog.String("tenant_id", t.ID), slog.String("time_zone", t.TimeZone))
}

// storeLocal keeps e in the local layer unless an invalidation happened
// since epoch.
func (c *Cache) storeLocal(key string, e cacheEntry, epoch uint64) {
	ttl := c.opts.LocalTTL
	if !e.Found {
		ttl = min(ttl, c.opts.NegativeTTL)
	}
	c.local.setIfEpoch(key, e, ttl, epoch, time.Now())
}
