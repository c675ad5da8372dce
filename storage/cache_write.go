package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/invoicing/tenantworker/tenantctx"
)

// cacheInvalidateTimeout bounds the invalidation after a backend write. It
// runs detached from the caller's cancellation: once the backend changed,
// the cache must follow.
const cacheInvalidateTimeout = 5 * time.Second

// ListTenants passes through to the backend.
func (c *Cache) ListTenants(ctx context.Context, opts ListOptions) ([]tenantctx.Tenant, error) {
	return c.backend.ListTenants(ctx, opts)
}

// AppendAudit passes through to the backend.
func (c *Cache) AppendAudit(ctx context.Context, e AuditEntry) error {
	return c.backend.AppendAudit(ctx, e)
}

// AuditEntries passes through to the backend.
func (c *Cache) AuditEntries(ctx context.Context, tenantID string) ([]AuditEntry, error) {
	return c.backend.AuditEntries(ctx, tenantID)
}

// CreateTenant creates the tenant in the backend, then drops any cached
// "not found" for its id and slug.
func (c *Cache) CreateTenant(ctx context.Context, t tenantctx.Tenant) (tenantctx.Tenant, error) {
	created, err := c.backend.CreateTenant(ctx, t)
	if err != nil && unchanged(err) {
		return created, err
	}
	c.invalidate(ctx, tenantCacheKeys(t.ID, t.Slug), "")
	return created, err
}

// SetStatus changes the status in the backend, then invalidates the tenant
// in every layer and instance; a read through this instance right after
// sees the new status.
func (c *Cache) SetStatus(ctx context.Context, id string, status tenantctx.Status) (tenantctx.Tenant, error) {
	if err := tenantctx.ValidateID(id); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("set status: %w: %w", ErrNotFound, err)
	}
	t, err := c.backend.SetStatus(ctx, id, status)
	if err != nil && unchanged(err) {
		return t, err
	}
	slug := t.Slug
	if err != nil {
		// The outcome is unknown; find the slug to invalidate it too.
		if cur, lerr := c.backend.TenantByID(context.WithoutCancel(ctx), id); lerr == nil {
			slug = cur.Slug
		}
	}
	c.invalidate(ctx, tenantCacheKeys(id, slug), "")
	return t, err
}

// SetLimits changes the plan and limits in the backend, then invalidates
// the tenant in every layer and instance.
func (c *Cache) SetLimits(ctx context.Context, id, plan string, l tenantctx.Limits) (tenantctx.Tenant, error) {
	if err := tenantctx.ValidateID(id); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("set limits: %w: %w", ErrNotFound, err)
	}
	t, err := c.backend.SetLimits(ctx, id, plan, l)
	if err != nil {
		return t, err
	}
	c.invalidate(ctx, tenantCacheKeys(id, t.Slug), "")
	return t, nil
}

// DeleteTenant deletes the tenant in the backend, then invalidates it and
// its API keys in every layer and instance.
func (c *Cache) DeleteTenant(ctx context.Context, id string) error {
	if err := tenantctx.ValidateID(id); err != nil {
		return fmt.Errorf("delete tenant: %w: %w", ErrNotFound, err)
	}
	// The slug is needed for the invalidation and is gone after the delete.
	cur, lerr := c.backend.TenantByID(ctx, id)
	if lerr != nil && !errors.Is(lerr, ErrNotFound) {
		return fmt.Errorf("delete tenant %s: %w", id, lerr)
	}
	err := c.backend.DeleteTenant(ctx, id)
	// Always, also after ErrNotFound: the cache may still hold a tenant
	// deleted behind its back.
	c.invalidate(ctx, tenantCacheKeys(id, cur.Slug), id)
	return err
}

// CreateAPIKey creates a key in the backend, then drops any cached "not
// found" for it.
func (c *Cache) CreateAPIKey(ctx context.Context, tenantID string) (string, error) {
	if err := tenantctx.ValidateID(tenantID); err != nil {
		return "", fmt.Errorf("create api key: %w: %w", ErrNotFound, err)
	}
	key, err := c.backend.CreateAPIKey(ctx, tenantID)
	if err != nil {
		return "", err
	}
	c.invalidate(ctx, []string{cacheKindAPIKey + HashAPIKey(key)}, "")
	return key, nil
}

// RevokeAPIKeys revokes the tenant's keys in the backend, then drops every
// cached key of the tenant in every layer and instance, so a revoked key
// fails at once through this instance.
func (c *Cache) RevokeAPIKeys(ctx context.Context, tenantID string) error {
	if err := tenantctx.ValidateID(tenantID); err != nil {
		return fmt.Errorf("revoke api keys: %w: %w", ErrNotFound, err)
	}
	err := c.backend.RevokeAPIKeys(ctx, tenantID)
	if err != nil && unchanged(err) {
		return err
	}
	c.invalidate(ctx, nil, tenantID)
	return err
}

// tenantCacheKeys returns the cache keys of a tenant's id and slug (when
// known).
func tenantCacheKeys(id, slug string) []string {
	keys := []string{cacheKindID + id}
	if slug != "" {
		keys = append(keys, cacheKindSlug+slug)
	}
	return keys
}

// unchanged reports whether a backend write error means that nothing
// changed, so there is nothing to invalidate.
func unchanged(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) || errors.Is(err, ErrInvalidTransition) ||
		errors.Is(err, tenantctx.ErrInvalidID) || errors.Is(err, tenantctx.ErrInvalidSlug) ||
		errors.Is(err, tenantctx.ErrReservedSlug) || errors.Is(err, tenantctx.ErrInvalidSchema) ||
		errors.Is(err, tenantctx.ErrInvalidStatus)
}

// invalidate drops keys, and the API keys of keysOfTenant when set, from
// Redis, then from the local layer, then tells other instances. Redis goes
// first: a local reader that read Redis before its invalidation noted the
// local epoch before it, so the local drop makes it discard what it read.
// Failures are logged; the local layer is dropped regardless.
func (c *Cache) invalidate(ctx context.Context, keys []string, keysOfTenant string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cacheInvalidateTimeout)
	defer cancel()
	c.redisInvalidate(ctx, keys, keysOfTenant)
	var tenants []string
	if keysOfTenant != "" {
		tenants = []string{keysOfTenant}
	}
	c.local.drop(keys, tenants)
	c.publish(ctx, invalidation{Source: c.instance, Keys: keys, KeysOfTenant: keysOfTenant})
}

// AddDatabase registers a tenant database in the backend (nothing of it
// is cached).
func (c *Cache) AddDatabase(ctx context.Context, name, url string) (Database, error) {
	return c.backend.AddDatabase(ctx, name, url)
}

// Databases lists the registered databases from the backend, uncached.
func (c *Cache) Databases(ctx context.Context) ([]Database, error) {
	return c.backend.Databases(ctx)
}

// SetPlacement changes the tenant's database in the backend, then
// invalidates the tenant in every layer and instance, so every process
// reaches its schema where it now lives.
func (c *Cache) SetPlacement(ctx context.Context, id, database string) (tenantctx.Tenant, error) {
	if err := tenantctx.ValidateID(id); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("set placement: %w: %w", ErrNotFound, err)
	}
	t, err := c.backend.SetPlacement(ctx, id, database)
	if err != nil {
		return t, err
	}
	c.invalidate(ctx, tenantCacheKeys(id, t.Slug), "")
	return t, nil
}
