package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/invoicing/tenantworker/tenantctx"
)

// cacheInvalidateTimeout bounds the invalidation after a backend write. It
// runs detached from the caller's cancellation and, past the caller's
// deadline, without the caller (invalidate): once the backend changed, the
// cache must follow.
const cacheInvalidateTimeout = 5 * time.Second

// ListTenants passes through to the backend.
func (c *Cache) ListTenants(ctx context.Context, opts ListOptions) ([]tenantctx.Tenant, error) {
	return c.backend.ListTenants(ctx, opts)
}

// AppendAudit passes through to the backend.
func (c *Cache) AppendAudit(ctx context.Context, e AuditEntry) error {
	return c.backend.AppendAudit(ctx, e)
}

// AppendAuditOnce passes through to the backend.
func (c *Cache) AppendAuditOnce(ctx context.Context, e AuditEntry) (bool, error) {
	return c.backend.AppendAuditOnce(ctx, e)
}

// AppendAuditUnlessLatest passes through to the backend.
func (c *Cache) AppendAuditUnlessLatest(ctx context.Context, e AuditEntry, among, match json.RawMessage) (bool, error) {
	return c.backend.AppendAuditUnlessLatest(ctx, e, among, match)
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
	_ = c.invalidate(ctx, tenantCacheKeys(t.ID, t.Slug), "") // logged; a new tenant revokes nothing
	return created, err
}

// SetStatus changes the status in the backend, then invalidates the tenant
// in every layer and instance; a read through this instance right after
// sees the new status. When the change is saved but its invalidation could
// not be applied in Redis or published, it returns the tenant and an error
// wrapping ErrInvalidationFailed: other instances may serve the old status
// until their entries expire, and the caller must say so.
func (c *Cache) SetStatus(ctx context.Context, id string, status tenantctx.Status) (tenantctx.Tenant, error) {
	return c.setStatus(ctx, id, status, func() (tenantctx.Tenant, error) { return c.backend.SetStatus(ctx, id, status) })
}

// SetStatusFrom is SetStatus through the backend's SetStatusFrom: a status
// that was not from changes nothing and invalidates nothing.
func (c *Cache) SetStatusFrom(ctx context.Context, id string, from, status tenantctx.Status) (tenantctx.Tenant, error) {
	return c.setStatus(ctx, id, status, func() (tenantctx.Tenant, error) { return c.backend.SetStatusFrom(ctx, id, from, status) })
}

// setStatus runs set, the backend's change, then invalidates the tenant
// unless the change certainly did not happen.
func (c *Cache) setStatus(ctx context.Context, id string, status tenantctx.Status, set func() (tenantctx.Tenant, error)) (tenantctx.Tenant, error) {
	if err := tenantctx.ValidateID(id); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("set status: %w: %w", ErrNotFound, err)
	}
	t, err := set()
	if err != nil && unchanged(err) {
		return t, err
	}
	if ierr := c.invalidateTenant(ctx, id, t, err); ierr != nil && err == nil {
		return t, fmt.Errorf("set status of tenant %s to %s: %w", id, status, ierr)
	}
	return t, err
}

// SetLimits changes the plan and limits in the backend, then invalidates
// the tenant in every layer and instance; an invalidation that could not
// be applied or published is an error wrapping ErrInvalidationFailed (the
// limits are saved all the same; other instances may use the old ones
// until their cache entry expires).
func (c *Cache) SetLimits(ctx context.Context, id, plan string, l tenantctx.Limits) (tenantctx.Tenant, error) {
	if err := tenantctx.ValidateID(id); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("set limits: %w: %w", ErrNotFound, err)
	}
	t, err := c.backend.SetLimits(ctx, id, plan, l)
	if err != nil && unchanged(err) {
		return t, err
	}
	if ierr := c.invalidateTenant(ctx, id, t, err); ierr != nil && err == nil {
		return t, fmt.Errorf("set limits of tenant %s: %w", id, ierr)
	}
	return t, err
}

// SetTimeZone changes the time zone in the backend, then invalidates the
// tenant in every layer and instance, as SetLimits: an invalidation that
// failed is an error wrapping ErrInvalidationFailed (the zone is saved;
// other instances may judge due dates in the old one until their cache
// entry expires).
func (c *Cache) SetTimeZone(ctx context.Context, id, zone string) (tenantctx.Tenant, error) {
	if err := tenantctx.ValidateID(id); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("set time zone: %w: %w", ErrNotFound, err)
	}
	t, err := c.backend.SetTimeZone(ctx, id, zone)
	if err != nil && unchanged(err) {
		return t, err
	}
	if ierr := c.invalidateTenant(ctx, id, t, err); ierr != nil && err == nil {
		return t, fmt.Errorf("set time zone of tenant %s: %w", id, ierr)
	}
	return t, err
}

// slugLookupTimeout bounds invalidateTenant's read of a slug from the
// backend, within the invalidation's own bound (cacheInvalidateTimeout),
// so that a backend that does not answer leaves the invalidation of the
// id time to run.
const slugLookupTimeout = cacheInvalidateTimeout / 2

// invalidateTenant invalidates tenant id, under its id and its slug,
// after a write that returned t and err, as invalidate does. The slug is
// t's or, when the write's outcome is unknown (err) and t has none, the
// backend's: read as part of the invalidation, which goes on without the
// caller past its deadline, and within slugLookupTimeout, since a write
// whose answer did not come may be one the backend does not answer at
// all (the slug is then left out, the id invalidated all the same).
func (c *Cache) invalidateTenant(ctx context.Context, id string, t tenantctx.Tenant, err error) error {
	if err == nil || t.Slug != "" {
		return c.invalidate(ctx, tenantCacheKeys(id, t.Slug), "")
	}
	return c.invalidateWith(ctx, tenantCacheKeys(id, ""), func(ctx context.Context) []string {
		ctx, cancel := context.WithTimeout(ctx, slugLookupTimeout)
		defer cancel()
		cur, lerr := c.backend.TenantByID(ctx, id)
		if lerr != nil || cur.Slug == "" {
			return nil
		}
		return []string{cacheKindSlug + cur.Slug}
	}, "")
}

// DeleteTenant deletes the tenant in the backend, then invalidates it and
// its API keys in every layer and instance; an invalidation that could not
// be applied or published is an error wrapping ErrInvalidationFailed (the
// row is gone all the same).
func (c *Cache) DeleteTenant(ctx context.Context, id string) error {
	return c.deleteTenant(ctx, "delete", id, c.backend.DeleteTenant)
}

// WithdrawTenant withdraws the tenant in the backend (see
// TenantStore.WithdrawTenant), then invalidates it as DeleteTenant does.
func (c *Cache) WithdrawTenant(ctx context.Context, id string) error {
	return c.deleteTenant(ctx, "withdraw", id, c.backend.WithdrawTenant)
}

// deleteTenant runs del, the backend's DeleteTenant or WithdrawTenant,
// then invalidates the tenant and its API keys; verb names it in errors.
func (c *Cache) deleteTenant(ctx context.Context, verb, id string, del func(context.Context, string) error) error {
	if err := tenantctx.ValidateID(id); err != nil {
		return fmt.Errorf("%s tenant: %w: %w", verb, ErrNotFound, err)
	}
	// The slug is needed for the invalidation and is gone after the delete.
	cur, lerr := c.backend.TenantByID(ctx, id)
	if lerr != nil && !errors.Is(lerr, ErrNotFound) {
		return fmt.Errorf("%s tenant %s: %w", verb, id, lerr)
	}
	err := del(ctx, id)
	// Always, also after ErrNotFound: the cache may still hold a tenant
	// deleted behind its back.
	if ierr := c.invalidate(ctx, tenantCacheKeys(id, cur.Slug), id); ierr != nil && err == nil {
		return fmt.Errorf("%s tenant %s: %w", verb, id, ierr)
	}
	return err
}

// CreateAPIKey is IssueAPIKey returning only the key.
func (c *Cache) CreateAPIKey(ctx context.Context, tenantID string) (string, error) {
	if err := tenantctx.ValidateID(tenantID); err != nil {
		return "", fmt.Errorf("create api key: %w: %w", ErrNotFound, err)
	}
	_, key, err := c.IssueAPIKey(ctx, tenantID)
	return key, err
}

// RevokeAPIKeys revokes the tenant's keys in the backend, then drops every
// cached key of the tenant in every layer and instance, so a revoked key
// fails at once through this instance, and through the others as soon as
// they receive the invalidation. When that cannot be applied in Redis or
// published, the error wraps ErrInvalidationFailed (the keys are revoked
// in the backend all the same).
func (c *Cache) RevokeAPIKeys(ctx context.Context, tenantID string) error {
	if err := tenantctx.ValidateID(tenantID); err != nil {
		return fmt.Errorf("revoke api keys: %w: %w", ErrNotFound, err)
	}
	err := c.backend.RevokeAPIKeys(ctx, tenantID)
	if err != nil && unchanged(err) {
		return err
	}
	if ierr := c.invalidate(ctx, nil, tenantID); ierr != nil && err == nil {
		return fmt.Errorf("revoke api keys of tenant %s: %w", tenantID, ierr)
	}
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
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) || errors.Is(err, ErrInvalidTransition) || errors.Is(err, ErrStatusChanged) ||
		errors.Is(err, ErrTenantDeleting) ||
		errors.Is(err, tenantctx.ErrInvalidID) || errors.Is(err, tenantctx.ErrInvalidSlug) ||
		errors.Is(err, tenantctx.ErrReservedSlug) || errors.Is(err, tenantctx.ErrInvalidSchema) ||
		errors.Is(err, tenantctx.ErrInvalidStatus) || errors.Is(err, tenantctx.ErrInvalidTimeZone)
}

// invalidate drops keys, and the API keys of keysOfTenant when set, from
// Redis, then from the local layer, then tells other instances. Redis goes
// first: a local reader that read Redis before its invalidation noted the
// local epoch before it, so the local drop makes it discard what it read.
// The local layer is dropped regardless; what failed in Redis (the
// invalidation, the publish) is logged and returned wrapping
// ErrInvalidationFailed, for the writes that revoke access to fail with.
//
// The invalidation runs detached from ctx's cancellation, within
// cacheInvalidateTimeout: once the backend changed, the cache must follow.
// Its caller waits for it, but not past ctx's deadline (an admin request's,
// which must answer then): invalidate then returns an error wrapping
// ErrInvalidationPending and context.DeadlineExceeded, and the
// invalidation goes on and logs its outcome; Wait waits for it. A ctx
// cancelled before its deadline (the client went away) waits for it.
func (c *Cache) invalidate(ctx context.Context, keys []string, keysOfTenant string) error {
	return c.invalidateWith(ctx, keys, nil, keysOfTenant)
}

// invalidateWith is invalidate of keys and of those that more, when set,
// returns: it runs as part of the invalidation, on its ctx (detached from
// the caller's, within cacheInvalidateTimeout), so that the caller does
// not wait for it past its deadline either.
func (c *Cache) invalidateWith(ctx context.Context, keys []string, more func(context.Context) []string, keysOfTenant string) error {
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cacheInvalidateTimeout)
	// Whoever changes state from running first takes the outcome: the
	// caller (ended) or, once the caller stopped waiting, the log.
	const running, ended, abandoned = 0, 1, 2
	var state atomic.Int32
	done := make(chan error, 1)
	c.pending.Add(1)
	go func() {
		defer c.pending.Done()
		defer cancel()
		keys := keys
		if more != nil {
			keys = append(slices.Clip(keys), more(ictx)...)
		}
		err := c.invalidateNow(ictx, keys, keysOfTenant)
		if state.CompareAndSwap(running, ended) {
			done <- err
			return
		}
		tenantID := keysOfTenant
		printable := make([]string, len(keys))
		for i, k := range keys {
			printable[i] = printableKey(k)
			if id, ok := strings.CutPrefix(k, cacheKindID); ok && tenantID == "" {
				tenantID = id
			}
		}
		attrs := []any{slog.String("tenant_id", tenantID), slog.String("keys", strings.Join(printable, ","))}
		if err != nil {
			// What failed in Redis is logged already (redisWriteFailed).
			c.log.ErrorContext(ictx, "tenant cache: invalidation ended after its caller's deadline: not propagated",
				append(attrs, slog.String("error", err.Error()))...)
			return
		}
		c.log.InfoContext(ictx, "tenant cache: invalidation ended after its caller's deadline: propagated", attrs...)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && state.CompareAndSwap(running, abandoned) {
		return fmt.Errorf("%w: %w", ErrInvalidationPending, ctx.Err())
	}
	return <-done
}

// invalidateNow is invalidate's work, on ctx.
func (c *Cache) invalidateNow(ctx context.Context, keys []string, keysOfTenant string) error {
	rerr := c.redisInvalidate(ctx, keys, keysOfTenant)
	var tenants []string
	if keysOfTenant != "" {
		tenants = []string{keysOfTenant}
	}
	c.local.drop(keys, tenants)
	perr := c.publish(ctx, invalidation{Source: c.instance, Keys: keys, KeysOfTenant: keysOfTenant})
	if err := errors.Join(rerr, perr); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidationFailed, err)
	}
	return nil
}

// Wait waits until no invalidation that went on past its caller's
// deadline (invalidate) runs, or ctx ends (its error, then). A process
// calls it before it closes the Redis client the cache uses.
func (c *Cache) Wait(ctx context.Context) error {
	idle := make(chan struct{})
	go func() {
		c.pending.Wait()
		close(idle)
	}()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for running cache invalidations: %w", ctx.Err())
	}
}

// AddDatabase registers a tenant database in the backend (nothing of it
// is cached).
func (c *Cache) AddDatabase(ctx context.Context, name, url string) (Database, error) {
	return c.backend.AddDatabase(ctx, name, url)
}

// RemoveDatabase passes through to the backend (nothing of it is cached).
func (c *Cache) RemoveDatabase(ctx context.Context, name string) error {
	return c.backend.RemoveDatabase(ctx, name)
}

// Databases lists the registered databases from the backend, uncached.
func (c *Cache) Databases(ctx context.Context) ([]Database, error) {
	return c.backend.Databases(ctx)
}

// SetPlacement changes the tenant's database in the backend, then
// invalidates the tenant in every layer and instance, so every process
// reaches its schema where it now lives. An invalidation that could not be
// applied or published is an error wrapping ErrInvalidationFailed, with
// the tenant: the placement is saved, but other instances may reach the
// old database until their cache entry expires.
func (c *Cache) SetPlacement(ctx context.Context, id, from, to string, generation int64) (tenantctx.Tenant, error) {
	if err := tenantctx.ValidateID(id); err != nil {
		return tenantctx.Tenant{}, fmt.Errorf("set placement: %w: %w", ErrNotFound, err)
	}
	t, err := c.backend.SetPlacement(ctx, id, from, to, generation)
	if err != nil && (unchanged(err) || errors.Is(err, ErrPlacementChanged) || errors.Is(err, ErrRegistrationChanged)) {
		return t, err
	}
	// Also when the outcome is unknown (err): the switch may be saved.
	if ierr := c.invalidateTenant(ctx, id, t, err); ierr != nil && err == nil {
		return t, fmt.Errorf("set placement of tenant %s: %w", id, ierr)
	}
	return t, err
}

// SetQueuePaused passes through to the backend: the pause is not part of
// a cached tenant.
func (c *Cache) SetQueuePaused(ctx context.Context, id string, paused bool) error {
	return c.backend.SetQueuePaused(ctx, id, paused)
}

// SyncQueuePaused passes through to the backend, which calls read under
// the tenant's lock.
func (c *Cache) SyncQueuePaused(ctx context.Context, id string, read func(context.Context) (bool, error)) (bool, error) {
	return c.backend.SyncQueuePaused(ctx, id, read)
}

// PausedTenants passes through to the backend, uncached.
func (c *Cache) PausedTenants(ctx context.Context) ([]string, error) {
	return c.backend.PausedTenants(ctx)
}
